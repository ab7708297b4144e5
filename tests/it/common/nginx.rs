//! A real nginx for the tests of generated configs: started on a config, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX_HINT: &str = "install nginx: `apt-get install -y nginx` (scripts/test does this)";

/// `-c conf -e error.log -g 'pid …;'`: nginx's files kept in `dir`.
pub fn nginx_paths(conf: &Path, dir: &Path) -> Vec<String> {
    vec![
        "-c".into(),
        conf.display().to_string(),
        "-e".into(),
        dir.join("error.log").display().to_string(),
        "-g".into(),
        format!("pid {};", dir.join("nginx.pid").display()),
    ]
}

/// A real nginx running a generated config; stopped on drop.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx on `conf` (which listens on 127.0.0.1:`port`), with its pid, error and
    /// access logs in `dir`; returns once the port accepts connections.
    pub fn start(conf: &Path, dir: &Path, port: u16) -> Self {
        // Access logs stay in the test's directory.
        let text = std::fs::read_to_string(conf).unwrap().replacen(
            "http {",
            &format!(
                "http {{\n    access_log {};",
                dir.join("access.log").display()
            ),
            1,
        );
        std::fs::write(conf, text).unwrap();
        let child = Command::new("nginx")
            .args(nginx_paths(conf, dir).iter().take(4))
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx ({e}): {NGINX_HINT}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM first: nginx's master then stops its workers. SIGKILL alone would leave
    /// the workers running, orphaned, holding the port.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
