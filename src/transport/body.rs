//! Request bodies the engine reads whole (a polling POST), whichever HTTP server read
//! them: hyper's streaming [`Incoming`], or the bytes the listener's own HTTP/1.1 loop
//! already read ([`ReadBody`], see `transport::http1`).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::future::Future;

/// Why a body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than the limit")]
    TooLarge,
    #[error("the body could not be read (the connection failed or closed)")]
    Failed,
}

/// A request body that can be read whole, up to a limit.
pub trait RequestBody: Send + 'static {
    fn read_whole(self, limit: usize) -> impl Future<Output = Result<Bytes, BodyError>> + Send;
}

impl RequestBody for Incoming {
    async fn read_whole(self, limit: usize) -> Result<Bytes, BodyError> {
        match Limited::new(self, limit).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(BodyError::TooLarge)
            }
            Err(_) => Err(BodyError::Failed),
        }
    }
}

/// A body the listener read before the request was handed on: all of it, or nothing
/// when its `Content-Length` was past the limit the app gave (it is then left unread and
/// the connection closed after the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadBody {
    Read(Bytes),
    TooLarge,
}

impl RequestBody for ReadBody {
    async fn read_whole(self, limit: usize) -> Result<Bytes, BodyError> {
        match self {
            ReadBody::Read(bytes) if bytes.len() <= limit => Ok(bytes),
            _ => Err(BodyError::TooLarge),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_body_is_given_whole_up_to_the_limit() {
        let body = ReadBody::Read(Bytes::from_static(b"4hello"));
        assert_eq!(
            body.clone().read_whole(6).await.as_deref(),
            Ok(&b"4hello"[..])
        );
        assert_eq!(body.read_whole(5).await, Err(BodyError::TooLarge));
        assert_eq!(
            ReadBody::TooLarge.read_whole(1 << 20).await,
            Err(BodyError::TooLarge)
        );
    }
}
