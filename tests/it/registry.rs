//! Models, versions, tags, statuses, status requests and events.
