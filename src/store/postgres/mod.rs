//! The PostgreSQL backend: a pool of connections, the server grouping concurrent commits
//! itself.
//!
//! The areas of the store interface move here from the shared `sqlx` code one by one; those
//! not yet here are still served by `Store`'s own methods (see `store/mod.rs`).

mod users;

use sqlx::AnyPool;

use super::Storage;

/// The PostgreSQL implementation of [`Storage`].
pub struct Postgres {
    pool: AnyPool,
}

impl Postgres {
    pub(super) fn new(pool: AnyPool) -> Postgres {
        Postgres { pool }
    }
}

impl Storage for Postgres {}
