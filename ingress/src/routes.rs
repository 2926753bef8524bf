//! The API's route templates, learnt from the OpenAPI document: to name path parameters in
//! validation errors (poem-openapi reports them by position) and to label metrics by route.
use std::sync::OnceLock;

tokio::task_local! {
    /// The path of the request being handled.
    pub static REQUEST_PATH: String;
}

/// The path templates, split into segments (`{name}` for parameters).
static ROUTES: OnceLock<Vec<Vec<String>>> = OnceLock::new();

/// Learns the path templates from the OpenAPI document.
pub fn register(spec_json: &str) {
    let routes = serde_json::from_str::<serde_json::Value>(spec_json)
        .ok()
        .and_then(|spec| {
            spec.get("paths")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().cloned().collect::<Vec<_>>())
        })
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.split('/').map(str::to_owned).collect())
        .collect();
    let _ = ROUTES.set(routes);
}

/// The template the current request's path matches.
fn current() -> Option<&'static Vec<String>> {
    let path = REQUEST_PATH.try_with(|p| p.clone()).ok()?;
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES.get()?.iter().find(|t| {
        t.len() == segments.len()
            && t.iter()
                .zip(&segments)
                .all(|(t, s)| t.starts_with('{') || t == s)
    })
}

/// The name of the `index`th path parameter of the current request's route.
pub fn path_param_name(index: usize) -> Option<String> {
    current()?
        .iter()
        .filter_map(|t| t.strip_prefix('{').and_then(|t| t.strip_suffix('}')))
        .nth(index)
        .map(str::to_owned)
}

/// Whether the current request's path is one of the API's routes.
pub fn is_known() -> bool {
    current().is_some()
}

/// The current request's route template, or `unmatched`: a bounded label for metrics.
pub fn current_template() -> String {
    current()
        .map(|t| t.join("/"))
        .unwrap_or_else(|| "unmatched".into())
}
