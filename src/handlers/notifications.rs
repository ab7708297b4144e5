//! The `/notifications` namespace: each socket joins `user:<id>`; lists, unread counts
//! (cached, see [`crate::cache`]) and mark-read. New notifications arrive through the
//! HTTP API ([`crate::handlers::api`]) and are pushed as `notification:new` with the fresh count.

use crate::handlers::kit::{limit_field, object_arg, on_request, AppState, Failure, State, User};
use crate::server::{Namespace, NamespaceBuilder};
use crate::store::{NewNotification, Notification};
use serde_json::{json, Value};

/// The Socket.IO room of a user's sockets.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

pub fn notification_json(n: &Notification) -> Value {
    let ts =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({
        "id": n.id,
        "userId": n.user_id,
        "type": n.kind,
        "title": n.title,
        "body": n.body,
        "data": n.data,
        "status": n.status,
        "createdAt": ts(&n.created_at),
        "readAt": n.read_at.as_ref().map(ts),
    })
}

/// The unread count: from the cache, else the primary (then cached).
pub async fn unread_count(state: &AppState, user: &str) -> Result<i64, Failure> {
    if let Some(n) = state.unread.get(user).await {
        return Ok(n);
    }
    let n = state.store.unread_count(user).await?;
    state.unread.set(user, n).await;
    Ok(n)
}

/// Stores a notification, invalidates the count, and pushes it to the user's sockets.
/// Returns the notification and how many sockets it was queued for on this node.
pub async fn create(
    state: &AppState,
    ns: &std::sync::Arc<Namespace>,
    new: NewNotification,
) -> Result<(Notification, usize), Failure> {
    let user = new.user_id.clone();
    let created = state.store.insert_notification(new).await?;
    state.unread.invalidate(&user).await;
    let count = unread_count(state, &user).await?;
    let mut payload = notification_json(&created);
    payload["unreadCount"] = json!(count);
    let delivered = ns.to(user_room(&user)).emit("notification:new", payload);
    Ok((created, delivered))
}

pub fn register(ns: &mut NamespaceBuilder, state: State) {
    ns.on_connect(|socket| async move {
        if let Some(user) = User::of(&socket) {
            socket.join(user_room(&user.id));
        }
        Ok(())
    });

    on_request(
        ns,
        &state,
        "notifications:list",
        |st, _socket, user, event| async move {
            let empty = serde_json::Map::new();
            let args = if event.args().is_empty() {
                &empty
            } else {
                object_arg(event.args())?
            };
            let limit = limit_field(args, 50, 20)?;
            let cursor = match args.get("cursor") {
                None | Some(Value::Null) => None,
                Some(_) => Some(crate::handlers::kit::id_field(args, "cursor")?),
            };
            let items = st.store.list_notifications(&user.id, cursor, limit).await?;
            let next = (items.len() as u32 == limit)
                .then(|| items.last().map(|n| n.id))
                .flatten();
            Ok(json!({
                "notifications": items.iter().map(notification_json).collect::<Vec<_>>(),
                "nextCursor": next,
            }))
        },
    );

    on_request(
        ns,
        &state,
        "notifications:unread_count",
        |st, _socket, user, _event| async move {
            Ok(json!({ "count": unread_count(&st, &user.id).await? }))
        },
    );

    on_request(
        ns,
        &state,
        "notifications:mark_read",
        |st, socket, user, event| async move {
            let args = object_arg(event.args())?;
            let ids = parse_ids(args)?;
            let updated = st.store.mark_read(&user.id, ids.as_deref()).await?;
            st.unread.invalidate(&user.id).await;
            let count = unread_count(&st, &user.id).await?;
            // The user's other tabs update their badge too.
            socket
                .namespace()
                .to(user_room(&user.id))
                .emit("notifications:unread_count", json!({ "count": count }));
            Ok(json!({ "updated": updated, "unreadCount": count }))
        },
    );
}

/// `{ids: [1, 2]}` → Some(ids); `{all: true}` → None (all of the user's).
fn parse_ids(args: &serde_json::Map<String, Value>) -> Result<Option<Vec<i64>>, Failure> {
    if args.get("all") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    let ids = args
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::invalid("expected {ids: [..]} or {all: true}"))?;
    if ids.is_empty() || ids.len() > 1000 {
        return Err(Failure::invalid("ids must list 1 to 1000 notification ids"));
    }
    ids.iter()
        .map(|v| v.as_i64().filter(|n| *n > 0))
        .collect::<Option<Vec<_>>>()
        .map(Some)
        .ok_or_else(|| Failure::invalid("ids must be positive integers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_read_arguments() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(parse_ids(&obj(json!({"all": true}))).unwrap(), None);
        assert_eq!(
            parse_ids(&obj(json!({"ids": [1, 2]}))).unwrap(),
            Some(vec![1, 2])
        );
        for bad in [
            json!({}),
            json!({"ids": []}),
            json!({"ids": ["x"]}),
            json!({"ids": [0]}),
            json!({"all": false}),
        ] {
            assert!(parse_ids(&obj(bad.clone())).is_err(), "{bad}");
        }
    }
}
