//! `rtctl admin-ui`: serves the Socket.IO Admin UI page from an installed
//! `@socket.io/admin-ui` package (see [`crate::admin_ui::page`]).

use crate::admin_ui::page::{Page, PageError};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AdminUiCommand {
    /// The UI's built files: `ui/dist` of `@socket.io/admin-ui` (`npm install
    /// @socket.io/admin-ui@0.5.1`).
    #[arg(long, default_value = "node_modules/@socket.io/admin-ui/ui/dist")]
    pub dir: PathBuf,

    /// Address to serve the page on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

impl AdminUiCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let page = Page::open(&self.dir)?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| PageError::Listen {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        println!(
            "Admin UI page on http://{addr}/ — log in with a node's URL (nodes started with \
             --admin-ui); the nodes' --allowed-origins must include http://{addr}"
        );
        page.serve(listener, crate::app::shutdown_signal()).await;
        Ok(())
    }
}
