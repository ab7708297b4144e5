//! The rows the store returns. One `FromRow` per type decodes from both backends.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// A 1:1 chat room. The pair is stored ordered: `user1_id < user2_id` (bytewise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ChatRoom {
    pub id: i64,
    pub user1_id: String,
    pub user2_id: String,
    pub created_at: DateTime<Utc>,
}

impl ChatRoom {
    pub fn has_member(&self, user_id: &str) -> bool {
        self.user1_id == user_id || self.user2_id == user_id
    }

    /// The other member, if `user_id` is one.
    pub fn peer_of(&self, user_id: &str) -> Option<&str> {
        if self.user1_id == user_id {
            Some(&self.user2_id)
        } else if self.user2_id == user_id {
            Some(&self.user1_id)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: i64,
    pub room_id: i64,
    pub sender_id: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// What a caller gives to create a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub user_id: String,
    /// Stored in the `type` column.
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: i64,
    pub user_id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    #[sqlx(json)]
    pub data: Value,
    #[sqlx(try_from = "String")]
    pub status: NotificationStatus,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Unread,
    Read,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Unread => "unread",
            NotificationStatus::Read => "read",
        }
    }
}

/// A `status` value outside the schema's CHECK; only a hand-edited row can produce it.
#[derive(Debug, thiserror::Error)]
#[error("unknown notification status {0:?}")]
pub struct UnknownStatus(String);

impl TryFrom<String> for NotificationStatus {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "unread" => Ok(NotificationStatus::Unread),
            "read" => Ok(NotificationStatus::Read),
            _ => Err(UnknownStatus(s)),
        }
    }
}

/// Connection counts of one pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolStat {
    /// Open connections, idle or in use.
    pub size: u32,
    /// Open connections waiting in the pool.
    pub idle: usize,
    /// The most connections the pool will open.
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    pub primary: PoolStat,
    pub replica: Option<PoolStat>,
}
