//! The HTTP paths beside the Socket.IO engine path: health and metrics first (cheap,
//! and answered while draining), then the service API under `/api/`, else 404.

use crate::handlers::api::Api;
use crate::observability::Endpoints;
use crate::server::Routes;
use std::sync::Arc;

pub(super) fn routes(api: Arc<Api>, observability: Arc<Endpoints>) -> Routes {
    Arc::new(move |req, _remote| {
        let api = api.clone();
        let observability = observability.clone();
        Box::pin(async move {
            if let Some(res) = observability.handle(req.method(), req.uri().path()).await {
                res
            } else if req.uri().path().starts_with("/api/") {
                api.handle(req).await
            } else {
                crate::server::not_found()
            }
        })
    })
}
