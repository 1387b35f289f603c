//! The generated `Host` trait, answered from [`ServiceRuntime`].

use super::ServiceRuntime;
use crate::bindings::llm_service::host::runtime::Host;

impl Host for ServiceRuntime {
    fn current_model(&mut self) -> String {
        ServiceRuntime::current_model(self).to_string()
    }
}
