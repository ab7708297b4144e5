//! The HTTP API the Next.js app calls, server to server (the requirements' SR-7
//! `ChatService` contract): persist, then push to the user's or room's sockets.
//!
//! `POST /api/notifications {userId, type, title, body, data}` → 201 `{id, createdAt,
//! unreadCount, delivered}`; `POST /api/chat/send {roomId, message, senderId}` → 201
//! `{id, createdAt}`. Bearer `RT_SERVICE_TOKEN`; JSON in and out; errors are
//! `{"error": code, "message": …}` with 400/401/403/404/413/429/503.

use crate::handlers::chat::{message_json, room_name, store_member_message, validate_text};
use crate::handlers::kit::{check_rate, no_nul, no_nul_in, Failure, State};
use crate::handlers::role::Role;
use crate::server::Io;
use crate::store::NewNotification;
use crate::transport::Body;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

/// The largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct Api {
    io: Io,
    state: State,
    service_token: String,
    /// Which routes this node answers (see [`Role`]).
    role: Role,
}

impl Api {
    pub fn new(io: Io, state: State, service_token: String, role: Role) -> Self {
        Api {
            io,
            state,
            service_token,
            role,
        }
    }

    /// Answers a request under `/api/`.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let route = match (req.method(), req.uri().path()) {
            (&Method::POST, "/api/notifications") => Route::Notifications,
            (&Method::POST, "/api/chat/send") => Route::ChatSend,
            (_, "/api/notifications" | "/api/chat/send") => {
                return failure(&Failure::new("method_not_allowed", "use POST"), 405)
            }
            _ => return failure(&Failure::new("not_found", "no such API route"), 404),
        };
        if let Some(owner) =
            Role::owner_of(req.uri().path()).filter(|_| !self.role.serves(req.uri().path()))
        {
            return self.not_this_role(req.uri().path(), owner);
        }
        if !self.authorized(req.headers()) {
            return failure(
                &Failure::new(
                    "unauthorized",
                    "send Authorization: Bearer <RT_SERVICE_TOKEN>",
                ),
                401,
            );
        }
        let body = match read_json(req).await {
            Ok(v) => v,
            Err(f) => return failure(&f, f.status()),
        };
        let result = match route {
            Route::Notifications => self.create_notification(body).await,
            Route::ChatSend => self.send_message(body).await,
        };
        match result {
            Ok(v) => json_response(StatusCode::CREATED, &v),
            Err(f) => failure(&f, f.status()),
        }
    }

    /// 404 for a route another role serves: the body names it, so a gateway pointed at
    /// the wrong service says which one it wanted.
    fn not_this_role(&self, path: &str, owner: Role) -> Response<Body> {
        let message = format!(
            "POST {path} is served by nodes with --role {} (or all); this node's role is {}",
            owner.as_str(),
            self.role.as_str()
        );
        let body = json!({
            "error": "wrong_service",
            "message": message,
            "role": self.role.as_str(),
            "servedBy": owner.as_str(),
        });
        json_response(StatusCode::NOT_FOUND, &body)
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        given.as_bytes().ct_eq(self.service_token.as_bytes()).into()
    }

    async fn create_notification(&self, body: Value) -> Result<Value, Failure> {
        let user_id = required_str(&body, "userId")?;
        let new = NewNotification {
            user_id: user_id.to_owned(),
            kind: required_str(&body, "type")?.to_owned(),
            title: required_str(&body, "title")?.to_owned(),
            body: optional_str(&body, "body")?.unwrap_or_default().to_owned(),
            data: match body.get("data") {
                None | Some(Value::Null) => json!({}),
                Some(v) => {
                    no_nul_in("data", v)?;
                    v.clone()
                }
            },
        };
        let ns = self.io.of("/notifications").ok_or_else(|| {
            Failure::new("not_found", "the /notifications namespace is not served")
        })?;
        let (created, delivered) =
            crate::handlers::notifications::create(&self.state, &ns, new).await?;
        let count = crate::handlers::notifications::unread_count(&self.state, user_id).await?;
        Ok(json!({
            "id": created.id,
            "createdAt": crate::handlers::notifications::notification_json(&created)["createdAt"],
            "unreadCount": count,
            "delivered": delivered,
        }))
    }

    async fn send_message(&self, body: Value) -> Result<Value, Failure> {
        let room_id = match body.get("roomId") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .filter(|id| *id > 0)
        .ok_or_else(|| Failure::invalid("roomId must be a positive integer id"))?;
        let sender = required_str(&body, "senderId")?;
        let text = validate_text(body.get("message"))?;
        check_rate(&self.state, "message:send", sender).await?;
        let message = store_member_message(&self.state, room_id, sender, text).await?;
        let payload = message_json(&message);
        if let Some(ns) = self.io.of("/chat") {
            ns.to(room_name(room_id))
                .emit("message:new", payload.clone());
        }
        Ok(json!({ "id": message.id, "createdAt": payload["createdAt"] }))
    }
}

enum Route {
    Notifications,
    ChatSend,
}

async fn read_json(req: Request<Incoming>) -> Result<Value, Failure> {
    let bytes = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Failure::new(
                    "payload_too_large",
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Failure::invalid("could not read the request body")
            }
        })?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::invalid(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Failure::invalid("the body must be a JSON object"));
    }
    Ok(value)
}

fn required_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, Failure> {
    let s = body
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Failure::invalid(format!("{field} must be a non-empty string")))?;
    no_nul(field, s)
}

fn optional_str<'a>(body: &'a Value, field: &str) -> Result<Option<&'a str>, Failure> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => no_nul(field, s).map(Some),
        Some(_) => Err(Failure::invalid(format!("{field} must be a string"))),
    }
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(value.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn failure(f: &Failure, status: u16) -> Response<Body> {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &f.to_json(),
    )
}
