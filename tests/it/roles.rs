//! Service roles (`--role chat|notifications`) on real `realtime-server` processes: each
//! serves its own namespace and API route, keeps `/`, refuses the other role's namespace
//! as Socket.IO refuses any unknown one, and answers the other role's route 404 with a
//! body naming the role that serves it.

use crate::common::app::random;
use crate::common::free_port;
use crate::common::nginx::Nginx;
use crate::common::node::NodeProcess;
use crate::common::nodejs::{interop_dir, require_node};
use crate::common::postgres::fresh_database;
use crate::common::raw::{self, Ws, QUICK};
use crate::common::redis::RedisServer;

/// (role, its namespace, its route, the other role, its namespace, its route)
const ROLES: [(&str, &str, &str, &str, &str, &str); 2] = [
    (
        "chat",
        "/chat",
        "/api/chat/send",
        "notifications",
        "/notifications",
        "/api/notifications",
    ),
    (
        "notifications",
        "/notifications",
        "/api/notifications",
        "chat",
        "/chat",
        "/api/chat/send",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_serves_its_own_and_points_to_the_other() {
    for (role, own_nsp, own_route, other, other_nsp, other_route) in ROLES {
        let node = NodeProcess::start(role, &["--role", role], &[]).await;

        let wrong = raw::request(node.addr, "POST", other_route, &[], b"{}").await;
        assert_eq!(wrong.status, 404, "{role}: {}", wrong.text());
        let body = wrong.json();
        assert_eq!(body["error"], "wrong_service", "{body}");
        assert_eq!(body["role"], role, "{body}");
        assert_eq!(body["servedBy"], other, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(&format!("--role {other}")), "{message}");
        // Its own route is there: without the service token, 401.
        let own = raw::request(node.addr, "POST", own_route, &[], b"{}").await;
        assert_eq!(own.status, 401, "{role} {own_route}: {}", own.text());

        let (mut ws, _) = Ws::open(node.addr).await;
        ws.send_text(&format!("40{other_nsp},")).await;
        assert_eq!(
            ws.recv_text(QUICK).await,
            format!(r#"44{other_nsp},{{"message":"Invalid namespace"}}"#)
        );
        // Its own namespace exists (it asks for a token), and so does `/`.
        ws.send_text(&format!("40{own_nsp},")).await;
        let reply = ws.recv_text(QUICK).await;
        assert!(
            reply.starts_with(&format!("44{own_nsp},")) && !reply.contains("Invalid namespace"),
            "{role}: {reply}"
        );
        ws.send_text("40").await;
        let reply = ws.recv_text(QUICK).await;
        assert!(
            reply.starts_with('4') && !reply.contains("Invalid namespace"),
            "{role}: / is served: {reply}"
        );
        ws.close().await;
    }
}

/// The requirements' gateway contract on real processes: a chat node (`--role chat
/// --path /chat-io/`) and a notification node (`--role notifications --path
/// /notifications-io/`) share one redis-server and one PostgreSQL, behind the nginx config
/// `rtctl gen nginx --chat-upstream … --notifications-upstream …` writes. The Node script
/// plays the Next.js gateway (CHAT_SERVICE_URL, NOTIFICATION_SERVICE_URL,
/// `ChatService.sendMessage(roomId, message, senderId)`) and two browsers with one manager
/// per service; it checks the responses, the pushed events and every error a gateway must
/// handle (tests/interop/gateway-contract.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_drives_two_role_services_behind_the_generated_nginx() {
    require_node(&["socket.io-client", "next-auth"]);
    let redis = RedisServer::start();
    let database = fresh_database().await;
    let secret = random("secret");
    let token = random("service-token");
    let envs = [
        ("NEXTAUTH_SECRET", secret.as_str()),
        ("RT_SERVICE_TOKEN", token.as_str()),
    ];
    let redis_url = redis.url();
    let node = |role: &'static str, path: &'static str, migrate: bool| {
        let mut args = vec![
            "--role",
            role,
            "--path",
            path,
            "--redis-url",
            redis_url.as_str(),
            "--database-url",
            database.as_str(),
        ];
        if migrate {
            args.push("--db-auto-migrate");
        }
        args
    };
    let chat = NodeProcess::start("chat-1", &node("chat", "/chat-io/", true), &envs).await;
    let notifications = NodeProcess::start(
        "notifications-1",
        &node("notifications", "/notifications-io/", false),
        &envs,
    )
    .await;

    let dir = std::env::temp_dir().join(format!("rt-gateway-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nginx.conf");
    let port = free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["gen", "nginx", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--chat-upstream", &chat.addr.to_string()])
        .args(["--notifications-upstream", &notifications.addr.to_string()])
        .arg("-o")
        .arg(&conf)
        .output()
        .expect("run rtctl gen nginx");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _nginx = Nginx::start(&conf, &dir, port);

    for transport in ["websocket", "polling"] {
        let run = tokio::process::Command::new("node")
            .arg(interop_dir().join("gateway-contract.mjs"))
            .arg(format!("http://127.0.0.1:{port}"))
            .arg(transport)
            .envs(envs)
            .env("CHAT_SERVICE_URL", chat.url())
            .env("NOTIFICATION_SERVICE_URL", notifications.url())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
            .await
            .expect("gateway-contract.mjs: no exit within 60 s")
            .expect("run node gateway-contract.mjs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "gateway-contract.mjs {transport} failed ({}):\n{stdout}{}\nchat node:\n{}\nnotifications node:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            chat.log(),
            notifications.log()
        );
        let contract = stdout.lines().find(|l| l.contains("] contract {"));
        println!(
            "{transport}: {}",
            contract.unwrap_or_else(|| panic!("{stdout}"))
        );
    }
}
