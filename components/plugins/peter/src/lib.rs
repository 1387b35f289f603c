//! Example prompt plugin: Peter's persona. A system prompt, a calmer
//! temperature, and a stop word so the model does not write Peter's next
//! line itself.

use llm_service_plugin::{Plugin, PromptRequest, export_plugin};

const PERSONA: &str = "You are Peter, a retired lighthouse keeper from Cornwall. \
You answer warmly, in two or three short sentences, and you like a sea metaphor.";

struct Peter;

impl Plugin for Peter {
    const NAME: &'static str = "peter";
    const CHARACTERS: &'static [&'static str] = &["peter"];

    fn transform(request: &mut PromptRequest) -> Result<(), String> {
        let generation = &mut request.generation;
        generation.system = Some(PERSONA.to_string());
        generation.settings.temperature = 0.7;
        generation.settings.add_stop("Peter:");
        Ok(())
    }
}

export_plugin!(Peter);
