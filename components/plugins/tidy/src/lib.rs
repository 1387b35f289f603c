//! Example prompt plugin: a post-processor. The answer loses any
//! "Human:"/"Assistant:" echoes and ends after its last full sentence.

use llm_service_plugin::text::{cut_after_last_sentence, strip_role_echoes};
use llm_service_plugin::{Plugin, PromptRequest, export_plugin};

struct Tidy;

impl Plugin for Tidy {
    const NAME: &'static str = "tidy";
    const CHARACTERS: &'static [&'static str] = &["narrator"];

    fn transform(_request: &mut PromptRequest) -> Result<(), String> {
        Ok(())
    }

    fn post_process(_request: &PromptRequest, text: String) -> Result<String, String> {
        Ok(cut_after_last_sentence(strip_role_echoes(&text)).to_string())
    }
}

export_plugin!(Tidy);
