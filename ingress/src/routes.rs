//! The API's route templates, learnt from the OpenAPI document: to name path parameters in
//! validation errors (poem-openapi reports them by position) and to label metrics by route.
use std::collections::HashMap;
use std::sync::OnceLock;

tokio::task_local! {
    /// The request being handled: its path, and the route template it matches, found once.
    pub static REQUEST_PATH: CurrentPath;
}

/// A request's path and, once asked for, the template it matches.
pub struct CurrentPath {
    path: String,
    template: OnceLock<Option<&'static Template>>,
}

impl CurrentPath {
    pub fn new(path: String) -> Self {
        CurrentPath {
            path,
            template: OnceLock::new(),
        }
    }
}

/// A path template, as written (`/businesses/{business_id}/sms/send`) and split into
/// segments (`{name}` for parameters).
struct Template {
    text: String,
    segments: Vec<String>,
}

/// The templates as a tree of segments, so a path is matched in one walk rather than
/// compared with every template (this runs on every request). A literal segment is
/// preferred to a parameter, as the router does.
#[derive(Default)]
struct Node {
    literal: HashMap<String, Node>,
    parameter: Option<Box<Node>>,
    template: Option<usize>,
}

impl Node {
    fn insert(&mut self, segments: &[String], index: usize) {
        let Some((first, rest)) = segments.split_first() else {
            self.template.get_or_insert(index);
            return;
        };
        let next = if first.starts_with('{') {
            self.parameter.get_or_insert_with(Default::default)
        } else {
            self.literal.entry(first.clone()).or_default()
        };
        next.insert(rest, index);
    }

    fn find(&self, segments: &[&str]) -> Option<usize> {
        let Some((first, rest)) = segments.split_first() else {
            return self.template;
        };
        self.literal
            .get(*first)
            .and_then(|n| n.find(rest))
            .or_else(|| self.parameter.as_ref()?.find(rest))
    }
}

struct Routes {
    templates: Vec<Template>,
    tree: Node,
}

/// The path templates.
static ROUTES: OnceLock<Routes> = OnceLock::new();

/// Learns the path templates from the OpenAPI document.
pub fn register(spec_json: &str) {
    let templates: Vec<Template> = serde_json::from_str::<serde_json::Value>(spec_json)
        .ok()
        .and_then(|spec| {
            spec.get("paths")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().cloned().collect::<Vec<_>>())
        })
        .unwrap_or_default()
        .into_iter()
        .map(|text| Template {
            segments: text.split('/').map(str::to_owned).collect(),
            text,
        })
        .collect();
    let mut tree = Node::default();
    for (i, t) in templates.iter().enumerate() {
        tree.insert(&t.segments, i);
    }
    let _ = ROUTES.set(Routes { templates, tree });
}

/// The template the current request's path matches (looked for once per request).
fn current() -> Option<&'static Template> {
    REQUEST_PATH
        .try_with(|current| {
            *current.template.get_or_init(|| {
                let routes = ROUTES.get()?;
                let segments: Vec<&str> = current.path.split('/').collect();
                Some(&routes.templates[routes.tree.find(&segments)?])
            })
        })
        .ok()
        .flatten()
}

/// The name of the `index`th path parameter of the current request's route.
pub fn path_param_name(index: usize) -> Option<String> {
    current()?
        .segments
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
pub fn current_template() -> &'static str {
    current().map_or("unmatched", |t| t.text.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn template_of(path: &str) -> &'static str {
        REQUEST_PATH
            .scope(CurrentPath::new(path.into()), async { current_template() })
            .await
    }

    #[tokio::test]
    async fn paths_match_their_template_literals_first() {
        register(
            r#"{"paths": {"/businesses/{business_id}/messages/{message_id}": {},
                          "/businesses/{business_id}/messages/cancel": {},
                          "/health": {}}}"#,
        );
        assert_eq!(
            template_of("/businesses/7/messages/cancel").await,
            "/businesses/{business_id}/messages/cancel"
        );
        assert_eq!(
            template_of("/businesses/7/messages/42").await,
            "/businesses/{business_id}/messages/{message_id}"
        );
        assert_eq!(template_of("/health").await, "/health");
        for unknown in [
            "/businesses/7/messages",
            "/businesses/7/messages/42/x",
            "/nope",
        ] {
            assert_eq!(template_of(unknown).await, "unmatched", "{unknown}");
        }
        assert_eq!(
            REQUEST_PATH
                .scope(
                    CurrentPath::new("/businesses/7/messages/42".into()),
                    async { path_param_name(1) }
                )
                .await
                .as_deref(),
            Some("message_id")
        );
    }
}
