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

    /// Instead of serving: read a password on stdin and print its bcrypt hash, for the
    /// nodes' --admin-ui-password-hash.
    #[arg(long)]
    pub hash_password: bool,
}

impl AdminUiCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        if self.hash_password {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                !password.is_empty(),
                "no password on stdin: `echo -n PASSWORD | rtctl admin-ui --hash-password`"
            );
            println!("{}", crate::admin_ui::hash_password(password)?);
            return Ok(());
        }
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
