//! Write a prompt plugin for llm-service: implement [`Plugin`] and export it
//! with [`export_plugin!`]. A plugin shapes the generations of the
//! characters it names (system prompt, prompt, settings, stop words) and may
//! post-process the answer's text.
//!
//! ```no_run
//! use llm_service_plugin::{Plugin, PromptRequest, export_plugin};
//!
//! struct Pirate;
//!
//! impl Plugin for Pirate {
//!     const NAME: &'static str = "pirate";
//!     const CHARACTERS: &'static [&'static str] = &["pirate"];
//!
//!     fn transform(request: &mut PromptRequest) -> Result<(), String> {
//!         request.generation.system = Some("You are a pirate. Answer like one.".into());
//!         request.generation.settings.temperature = 1.1;
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Pirate);
//! ```
//!
//! A plugin is pure computation: it runs in a fresh instance per call, with
//! no network, no files and no environment, under a deadline and a memory
//! limit set by the operator. Build it with
//! `cargo build --release --target wasm32-wasip2`.

pub mod text;

/// Generated bindings for the `llm-service:host/prompt-plugin` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "llm-service:host/prompt-plugin",
        pub_export_macro: true,
        default_bindings_module: "llm_service_plugin::bindings",
    });
}

pub use bindings::exports::llm_service::host::prompt::Manifest;
pub use bindings::llm_service::host::prompt_types::{Generation, PromptRequest, Settings};

/// A prompt plugin.
pub trait Plugin {
    /// Its name: 1 to 64 of `a-z 0-9 - _`; pushing a plugin with a loaded
    /// name replaces that plugin.
    const NAME: &'static str;
    /// The `character_name`s it serves (exact match).
    const CHARACTERS: &'static [&'static str];

    /// Changes `request.generation` (system prompt, prompt, settings) before
    /// it goes to the model. `Err` refuses the request: the client gets
    /// 422 with the message. The host checks the settings' ranges after.
    fn transform(request: &mut PromptRequest) -> Result<(), String>;

    /// The answer's text as the client should get it. The default keeps it.
    /// `Err` fails the request (502).
    fn post_process(request: &PromptRequest, text: String) -> Result<String, String> {
        let _ = request;
        Ok(text)
    }
}

impl Settings {
    /// Adds a stop sequence unless it is there already (the model stops
    /// before it; at most four are allowed).
    pub fn add_stop(&mut self, stop: &str) {
        if !self.stop.iter().any(|known| known == stop) {
            self.stop.push(stop.to_string());
        }
    }
}

#[doc(hidden)]
pub fn __describe<P: Plugin>() -> Manifest {
    Manifest {
        name: P::NAME.to_string(),
        characters: P::CHARACTERS.iter().map(|character| character.to_string()).collect(),
    }
}

#[doc(hidden)]
pub fn __transform<P: Plugin>(mut request: PromptRequest) -> Result<Generation, String> {
    P::transform(&mut request)?;
    Ok(request.generation)
}

/// Exports a [`Plugin`] implementation as the component's
/// `llm-service:host/prompt` interface.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __LlmServicePromptPlugin;

        impl $crate::bindings::exports::llm_service::host::prompt::Guest for __LlmServicePromptPlugin {
            fn describe() -> $crate::Manifest {
                $crate::__describe::<$plugin>()
            }

            fn transform(request: $crate::PromptRequest) -> Result<$crate::Generation, String> {
                $crate::__transform::<$plugin>(request)
            }

            fn post_process(request: $crate::PromptRequest, text: String) -> Result<String, String> {
                <$plugin as $crate::Plugin>::post_process(&request, text)
            }
        }

        $crate::bindings::export!(__LlmServicePromptPlugin with_types_in $crate::bindings);
    };
}
