//! Why an [`App`](super::App) could not be built. The messages say what to fix; the
//! cause follows in the error chain (`{:#}` prints both, as the binaries do).

use crate::auth::EmptySecret;
use crate::redis_client::RedisSetupError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Redis is configured but unusable; its own message names the URL and a hint.
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
    #[error("cannot open the database (check DATABASE_URL)")]
    Store(#[source] StoreError),
    #[error("NEXTAUTH_SECRET must not be empty")]
    AuthSecret(#[source] EmptySecret),
    #[error(
        "--adapter {0} does not run on a Redis Cluster yet: use --adapter redis or \
         redis-sharded, or point REDIS_URL / REDIS_SENTINELS at a non-clustered Redis"
    )]
    AdapterOnCluster(&'static str),
    /// `url` is redacted (no password).
    #[error("cannot connect the cluster adapter to Redis at {url}")]
    ClusterAdapter {
        url: String,
        #[source]
        source: redis::RedisError,
    },
}
