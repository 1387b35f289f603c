//! Test plugin: version 2 of "peter", with another persona and
//! temperature, so tests can tell the versions apart.

use llm_service_plugin::{Plugin, PromptRequest, export_plugin};

struct PeterV2;

impl Plugin for PeterV2 {
    const NAME: &'static str = "peter";
    const CHARACTERS: &'static [&'static str] = &["peter"];

    fn transform(request: &mut PromptRequest) -> Result<(), String> {
        request.generation.system = Some("You are Peter, version two: a ship's cook.".into());
        request.generation.settings.temperature = 0.3;
        Ok(())
    }
}

export_plugin!(PeterV2);
