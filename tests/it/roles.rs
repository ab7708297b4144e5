//! Service roles (`--role chat|notifications`) on real `realtime-server` processes: each
//! serves its own namespace and API route, keeps `/`, refuses the other role's namespace
//! as Socket.IO refuses any unknown one, and answers the other role's route 404 with a
//! body naming the role that serves it.

use crate::common::node::NodeProcess;
use crate::common::raw::{self, Ws, QUICK};

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
