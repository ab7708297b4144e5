//! The WebSocket transport: a direct `transport=websocket` connection (no polling
//! upgrade), with tungstenite buffers shrunk to 512 B like the server's.

use super::{net, ClientError, Target, Transport};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

pub struct WsReader(SplitStream<Ws>);
pub struct WsWriter(SplitSink<Ws, Message>);

/// The read buffer: Socket.IO messages here are ~100 bytes; tungstenite grows it for a
/// larger frame and the default (128 KiB) would be most of a client's memory.
const READ_BUFFER: usize = 512;

pub async fn connect(
    target: &Target,
) -> Result<(WsReader, WsWriter, serde_json::Value), ClientError> {
    let stream = net::connect(target.addr, target.source).await?;
    let url = format!(
        "ws://{}{}",
        target.authority,
        target.endpoint(Transport::Websocket, None)
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    let (sink, stream) = ws.split();
    let mut reader = WsReader(stream);
    let open = match reader.next().await {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(e),
        None => return Err(ClientError::Closed),
    };
    let open = super::frames::parse_open(&open)?;
    Ok((reader, WsWriter(sink), open))
}

impl WsReader {
    pub async fn next(&mut self) -> Option<Result<String, ClientError>> {
        loop {
            return match self.0.next().await? {
                Ok(Message::Text(t)) => Some(Ok(t.as_str().to_owned())),
                Ok(Message::Close(_)) => None,
                Ok(Message::Binary(_)) => {
                    Some(Err(ClientError::Protocol("unexpected binary frame".into())))
                }
                Ok(_) => continue,
                Err(e) => Some(Err(e.into())),
            };
        }
    }
}

impl WsWriter {
    pub async fn send(&mut self, packet: String) -> Result<(), ClientError> {
        Ok(self.0.send(Message::text(packet)).await?)
    }

    pub async fn close(&mut self) {
        let _ = self.0.close().await;
    }
}
