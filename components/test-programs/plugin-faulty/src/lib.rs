//! Test plugin serving "faulty" (and "narrator"): behaves when the prompt says nothing
//! special, and otherwise fails the way the prompt asks (`trap`, `loop`,
//! `sleep`, `hog` memory, `refuse`, `bad-settings`), each a way a real
//! plugin can go wrong; an answer containing `fail-post` fails its
//! post-processing. The prompt's first word is `version-N` in tests
//! that tell versions apart.

use llm_service_plugin::{Plugin, PromptRequest, export_plugin};

struct Faulty;

impl Plugin for Faulty {
    const NAME: &'static str = "faulty";
    // "narrator" too, which `tidy` serves: tests see the two conflict.
    const CHARACTERS: &'static [&'static str] = &["faulty", "narrator"];

    fn transform(request: &mut PromptRequest) -> Result<(), String> {
        let prompt = request.generation.prompt.clone();
        match prompt.as_str() {
            "trap" => panic!("faulty plugin asked to trap"),
            "loop" => loop {
                std::hint::black_box(&prompt);
            },
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(60)),
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "refuse" => return Err("faulty does not talk about that".into()),
            "bad-settings" => request.generation.settings.temperature = 9.0,
            _ => request.generation.system = Some(format!("faulty sees: {prompt}")),
        }
        Ok(())
    }

    fn post_process(_request: &PromptRequest, text: String) -> Result<String, String> {
        if text.contains("fail-post") {
            return Err("faulty was asked to fail post-processing".into());
        }
        Ok(text)
    }
}

export_plugin!(Faulty);
