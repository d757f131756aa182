//! Webhook event triggers and the ten-field payload the spec defines.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happened. `TEST` is only ever sent by Test Webhook and never stored as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventTrigger {
    ModelVersionCreated,
    ModelVersionDeleted,
    ModelTagChanged,
    ModelStatusChanged,
    ModelStatusChangeRequested,
    Test,
}

impl EventTrigger {
    /// The triggers a webhook can subscribe to (everything but `TEST`).
    pub const SUBSCRIBABLE: [EventTrigger; 5] = [
        EventTrigger::ModelVersionCreated,
        EventTrigger::ModelVersionDeleted,
        EventTrigger::ModelTagChanged,
        EventTrigger::ModelStatusChanged,
        EventTrigger::ModelStatusChangeRequested,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventTrigger::ModelVersionCreated => "MODEL_VERSION_CREATED",
            EventTrigger::ModelVersionDeleted => "MODEL_VERSION_DELETED",
            EventTrigger::ModelTagChanged => "MODEL_TAG_CHANGED",
            EventTrigger::ModelStatusChanged => "MODEL_STATUS_CHANGED",
            EventTrigger::ModelStatusChangeRequested => "MODEL_STATUS_CHANGE_REQUESTED",
            EventTrigger::Test => "TEST",
        }
    }

    pub fn from_str_opt(s: &str) -> Option<Self> {
        Self::SUBSCRIBABLE
            .into_iter()
            .chain([EventTrigger::Test])
            .find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every webhook: exactly the ten fields of the spec, in the spec's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPayload {
    pub event_trigger: EventTrigger,
    pub workspace_name: String,
    pub registry_model_name: String,
    /// Always a string.
    pub version: String,
    pub tags: Vec<String>,
    pub deleted_tags: Vec<String>,
    pub status: Option<String>,
    pub old_status: Option<String>,
    /// The model version's creation time, in UTC seconds since the Unix epoch.
    pub created_at: i64,
    pub source_experiment_key: Option<String>,
}

impl EventPayload {
    /// The sample payload of Test Webhook, with the spec's exact values.
    pub fn test(workspace_name: &str, model_name: &str, now_secs: i64) -> Self {
        EventPayload {
            event_trigger: EventTrigger::Test,
            workspace_name: workspace_name.to_owned(),
            registry_model_name: model_name.to_owned(),
            version: "1.2.3".into(),
            tags: vec!["addedTag".into(), "marketing".into()],
            deleted_tags: vec!["deletedTag".into()],
            status: Some("Staging".into()),
            old_status: Some("Development".into()),
            created_at: now_secs - 3600,
            source_experiment_key: Some("711e50b9e477498b91d32c024ffc802e".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_exactly_the_ten_fields() {
        let p = EventPayload::test("ws", "m", 7200);
        let v = serde_json::to_value(&p).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 10);
        for k in [
            "eventTrigger",
            "workspaceName",
            "registryModelName",
            "version",
            "tags",
            "deletedTags",
            "status",
            "oldStatus",
            "createdAt",
            "sourceExperimentKey",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert_eq!(v["eventTrigger"], "TEST");
        assert_eq!(v["createdAt"], 3600);
    }

    #[test]
    fn trigger_names_round_trip() {
        for t in EventTrigger::SUBSCRIBABLE {
            assert_eq!(EventTrigger::from_str_opt(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
    }
}
