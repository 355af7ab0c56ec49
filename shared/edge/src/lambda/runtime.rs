//! Start-up shared by every function: logging, the adapters built once per
//! execution environment ([`Environment`], in `aws`), configuration
//! validated before the first event, and the Lambda runtime loop.
//!
//! A bad configuration does not crash-loop the function. It is logged and
//! published once as a `config-error` notification, and every invocation then
//! fails with error type `ConfigError` (so it lands in the failure
//! destination and the errors alarm), doing no AWS work at all.

use std::future::Future;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

use crate::aws::environment::notifier_for;
pub use crate::aws::environment::Environment;
use crate::config::{Config, ConfigError};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};

/// Run `handler` for every invocation of the function named `function`,
/// with the ports `ports` takes from the environment once
/// ([`crate::lambda::function::serve`] is the one caller).
pub(crate) async fn serve<P, H, Fut>(
    function: &'static str,
    ports: impl FnOnce(&'static Environment) -> P,
    handler: H,
) -> Result<(), lambda_runtime::Error>
where
    P: Copy + 'static,
    H: Fn(P, &'static Environment, LambdaEvent<Value>) -> Fut,
    Fut: Future<Output = Result<Value, Diagnostic>>,
{
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = crate::aws::load_sdk_config().await;
    match Config::from_env() {
        Ok(config) => {
            let env: &'static Environment =
                Box::leak(Box::new(Environment::build(function, &sdk, config)));
            let ports = ports(env);
            lambda_runtime::run(service_fn(move |event| handler(ports, env, event))).await
        }
        Err(error) => {
            report_config_error(&sdk, function, &error).await;
            let diagnostic = Diagnostic {
                error_type: "ConfigError".into(),
                error_message: error.to_string(),
            };
            lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
                let diagnostic = diagnostic.clone();
                async move { Err::<Value, Diagnostic>(diagnostic) }
            }))
            .await
        }
    }
}

/// Log the configuration error and, if a topic is known, publish it. The
/// topic and deployment are read raw here: the validated config is exactly
/// what is missing.
async fn report_config_error(sdk: &aws_config::SdkConfig, function: &str, error: &ConfigError) {
    tracing::error!(
        function,
        variable = error.variable(),
        error = %error,
        "configuration is invalid; the function does nothing until it is fixed"
    );
    let raw = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let topic = raw("TOPIC_ARN").filter(|_| error.variable() != "TOPIC_ARN");
    let notification = Notification {
        kind: NotificationKind::ConfigError,
        severity: Severity::Critical,
        deployment: raw("DEPLOYMENT_NAME").unwrap_or_else(|| "unknown-deployment".into()),
        summary: format!("{function} is misconfigured: {}", error.variable()),
        details: json!({ "function": function, "variable": error.variable(), "error": error.to_string() }),
    };
    if let Err(e) = notifier_for(sdk, topic.as_deref())
        .publish(&notification)
        .await
    {
        tracing::error!(error = %e, "could not publish the config-error notification");
    }
}
