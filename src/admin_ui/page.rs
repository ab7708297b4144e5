//! Serves the Admin UI page itself: the built files of an installed
//! `@socket.io/admin-ui` package (`ui/dist`), from the directory given, so a team can host
//! the page next to its cluster instead of using the public one. The page is static (a
//! Vue app with relative asset paths); it talks to the nodes directly, so their
//! `--allowed-origins` must list the page's origin (the page sends credentials).
//!
//! Only files under the directory are served: a path that would leave it is refused.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0} has no index.html: point --dir at the ui/dist folder of @socket.io/admin-ui (e.g. `npm install @socket.io/admin-ui@0.5.1`, then --dir node_modules/@socket.io/admin-ui/ui/dist)")]
    NotTheUi(PathBuf),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The page's files.
#[derive(Debug, Clone)]
pub struct Page {
    root: PathBuf,
}

impl Page {
    /// The UI in `dir` (which must hold its `index.html`).
    pub fn open(dir: &Path) -> Result<Page, PageError> {
        if !dir.join("index.html").is_file() {
            return Err(PageError::NotTheUi(dir.to_owned()));
        }
        Ok(Page {
            root: dir.to_owned(),
        })
    }

    /// The file for a request path: `/` is `index.html`; `None` for anything that is not
    /// a plain relative path inside the directory (`..`, absolute, encoded separators).
    pub fn file_for(&self, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() || rel.ends_with('/') {
            format!("{rel}index.html")
        } else {
            rel.to_owned()
        };
        if rel.contains('%') || rel.contains('\\') {
            return None;
        }
        let rel = Path::new(&rel);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        Some(self.root.join(rel)).filter(|p| p.is_file())
    }

    /// Answers one request: the file, or 404 / 405.
    pub fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return status(StatusCode::METHOD_NOT_ALLOWED);
        }
        let Some(file) = self.file_for(req.uri().path()) else {
            return status(StatusCode::NOT_FOUND);
        };
        match std::fs::read(&file) {
            Ok(body) => {
                let mut res = Response::new(Full::new(Bytes::from(body)));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&file)),
                );
                res
            }
            Err(_) => status(StatusCode::NOT_FOUND),
        }
    }

    /// Serves the page on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let page = Arc::new(self);
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin UI page: accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let page = page.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let res = page.answer(&req);
                    async move { Ok::<_, std::convert::Infallible>(res) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(
        code.canonical_reason().unwrap_or(""),
    )));
    *res.status_mut() = code;
    res
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json" | "map") => "application/json",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> (Page, PathBuf) {
        let dir = std::env::temp_dir().join(format!("rt-page-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("js")).unwrap();
        std::fs::write(dir.join("index.html"), "<html>").unwrap();
        std::fs::write(dir.join("js/app.js"), "1").unwrap();
        (Page::open(&dir).unwrap(), dir)
    }

    #[test]
    fn serves_the_files_and_nothing_outside() {
        let (page, dir) = page();
        assert_eq!(page.file_for("/"), Some(dir.join("index.html")));
        assert_eq!(page.file_for("/js/app.js"), Some(dir.join("js/app.js")));
        for bad in [
            "/../etc/passwd",
            "/js/../../x",
            "/%2e%2e/x",
            "//etc/passwd",
            "/js\\..\\x",
            "/missing.js",
        ] {
            assert_eq!(page.file_for(bad), None, "{bad}");
        }
        let req = Request::get("/js/app.js").body(()).unwrap();
        let res = page.answer(&req);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let post = Request::post("/").body(()).unwrap();
        assert_eq!(page.answer(&post).status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(matches!(
            Page::open(&dir.join("js")),
            Err(PageError::NotTheUi(_))
        ));
    }
}
