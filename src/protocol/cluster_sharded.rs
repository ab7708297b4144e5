//! The channels of `createShardedAdapter` (`@socket.io/redis-adapter` 8.3,
//! `lib/sharded-adapter.ts`): which sharded pub/sub channel a message goes to and which
//! channels a node listens on. Its messages are [`super::cluster_adapter::Message`]s,
//! SPUBLISHed whole ([`Message::encode_sharded`]). Pure and I/O-free.
//!
//! - `<prefix>#<nsp>#`: every node of the namespace listens (and `PUBSUB SHARDNUMSUB` of
//!   it counts the nodes); requests and broadcasts go there;
//! - `<prefix>#<nsp>#<uid>#`: answers to the adapter `uid`;
//! - `<prefix>#<nsp>#<room>#`: in the dynamic modes, a broadcast to exactly one room
//!   without acknowledgements; only the nodes that have the room listen.

use super::cluster_adapter::{Body, Message};

/// `subscriptionMode`: how many channels a namespace uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubscriptionMode {
    /// Two channels per namespace: every broadcast reaches every node.
    Static,
    /// Also one channel per public room (not a socket id), listened to by the nodes that
    /// have the room: a broadcast to one room reaches only them. The package's default.
    #[default]
    Dynamic,
    /// Also one channel per private room (each socket's own id): for much 1:1 traffic.
    DynamicPrivate,
}

impl SubscriptionMode {
    /// The option's value in the package (`"static"`, `"dynamic"`, `"dynamic-private"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionMode::Static => "static",
            SubscriptionMode::Dynamic => "dynamic",
            SubscriptionMode::DynamicPrivate => "dynamic-private",
        }
    }

    /// Whether a node listens on the channel of a room it has
    /// (`shouldUseASeparateNamespace`); `private` says whether the room is the id of one
    /// of its sockets (`this.sids.has(room)`).
    pub fn listens_to_room(self, private: bool) -> bool {
        match self {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !private,
            SubscriptionMode::DynamicPrivate => true,
        }
    }
}

/// `looksLikeASocketId`: a 20-character string (JavaScript length: UTF-16 units). A
/// public room of that length is taken for one too, as upstream does.
pub fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

/// The channels of one namespace adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedChannels {
    /// `<prefix>#<nsp>#`
    pub main: String,
    /// `<prefix>#<nsp>#<uid>#`: where answers to this adapter arrive.
    pub response: String,
    pub mode: SubscriptionMode,
}

impl ShardedChannels {
    pub fn new(prefix: &str, nsp: &str, uid: &str, mode: SubscriptionMode) -> Self {
        let main = format!("{prefix}#{nsp}#");
        ShardedChannels {
            response: format!("{main}{uid}#"),
            main,
            mode,
        }
    }

    /// `dynamicChannel(room)`: `<prefix>#<nsp>#<room>#`.
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.main)
    }

    /// Where answers to adapter `requester` go (`doPublishResponse`).
    pub fn response_to(&self, requester: &str) -> String {
        self.room(requester)
    }

    /// Where `message` goes (`computeChannel`): a broadcast without acknowledgements to
    /// exactly one room uses the room's channel in the dynamic modes (in `dynamic`,
    /// unless the room looks like a socket id); everything else the namespace channel.
    /// A broadcast with acks cannot: it expects an answer from every node
    /// (`serverCount()`), not only from those that have the room.
    pub fn for_message(&self, message: &Message) -> String {
        let Body::Broadcast {
            opts,
            request_id: None,
            ..
        } = &message.body
        else {
            return self.main.clone();
        };
        let [room] = opts.rooms.as_slice() else {
            return self.main.clone();
        };
        let dynamic = match self.mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !looks_like_a_socket_id(room),
            SubscriptionMode::DynamicPrivate => true,
        };
        if dynamic {
            self.room(room)
        } else {
            self.main.clone()
        }
    }
}
