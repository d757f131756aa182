//! Auth, users, tokens, workspaces, members and role rules.
