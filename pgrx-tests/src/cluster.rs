use postgres::{Client, Config, NoTls};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

/// The server's configuration beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Libraries for `shared_preload_libraries`, e.g. `pg_stat_statements`, `pg_cron`.
    pub preload: Vec<String>,
    /// Further `postgresql.conf` lines, e.g. `("cron.database_name", "'dbopt_it'")`.
    pub settings: Vec<(String, String)>,
}

impl ClusterOptions {
    pub fn preload(mut self, library: &str) -> Self {
        self.preload.push(library.to_owned());
        self
    }

    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }
}

pub struct Cluster {
    dir: PathBuf,
    running: bool,
}

const PORT: u16 = 5432; // sockets only, each cluster in its own directory: no port clashes.

impl Cluster {
    /// A server with nothing preloaded.
    pub fn plain() -> Cluster {
        Cluster::start(ClusterOptions::default())
    }

    /// A server running pg_cron for `database`, jobs started as background workers (so they
    /// run as their role without a password).
    pub fn with_pg_cron(database: &str) -> Cluster {
        Cluster::start(
            ClusterOptions::default()
                .preload("pg_cron")
                .setting("cron.database_name", &format!("'{database}'"))
                .setting("cron.use_background_workers", "on")
                .setting("max_worker_processes", "20"),
        )
    }

    /// A server without pg_cron where dbopt's background worker runs jobs in `database`.
    pub fn with_dbopt_worker(database: &str) -> Cluster {
        Cluster::start(
            ClusterOptions::default()
                .preload("dbopt")
                .setting("dbopt.worker_databases", &format!("'{database}'"))
                .setting("max_worker_processes", "20")
                // The scheduler's start and stop are LOG messages.
                .setting("log_min_messages", "log"),
        )
    }

    /// Creates and starts a new cluster. Panics with the server log when it cannot start.
    pub fn start(options: ClusterOptions) -> Cluster {
        assert_dbopt_installed();
        let dir = std::env::temp_dir().join(format!(
            "dbopt-it-{}-{}",
            std::process::id(),
            NEXT_CLUSTER.fetch_add(1, Ordering::SeqCst)
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("removing a stale cluster directory");
        }
        std::fs::create_dir_all(&dir).expect("creating the cluster directory");
        hand_to_server_user(&dir);
        let mut cluster = Cluster {
            dir,
            running: false,
        };
        cluster.run_as_server_user(
            "initdb",
            &[
                "-D",
                cluster.data_dir().to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale",
                "C.UTF-8",
            ],
        );
        let mut conf = format!(
            "\n# dbopt integration test\nport = {PORT}\nlisten_addresses = ''\n\
             unix_socket_directories = '{}'\nfsync = off\nmax_connections = 60\n\
             log_min_messages = warning\nlog_line_prefix = '%m [%p] %d '\n",
            cluster.dir.display()
        );
        if !options.preload.is_empty() {
            conf += &format!(
                "shared_preload_libraries = '{}'\n",
                options.preload.join(",")
            );
        }
        for (name, value) in &options.settings {
            conf += &format!("{name} = {value}\n");
        }
        let conf_path = cluster.data_dir().join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).expect("reading postgresql.conf");
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).expect("writing postgresql.conf");
        cluster.start_server();
        cluster
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The server log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn config(&self, database: &str) -> Config {
        let mut config = Config::new();
        config
            .host_path(&self.dir)
            .port(PORT)
            .user("postgres")
            .dbname(database)
            .application_name("dbopt-it")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// A connection string for psql or another client.
    pub fn url(&self, database: &str) -> String {
        format!(
            "host={} port={PORT} user=postgres dbname={database}",
            self.dir.display()
        )
    }

    pub fn connect(&self, database: &str) -> Client {
        self.config(database)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connecting to {database}: {e}\n{}", self.log()))
    }

    /// Connects as another role (which must exist and may log in).
    pub fn connect_as(&self, database: &str, role: &str) -> Client {
        let mut config = self.config(database);
        config.user(role);
        config
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connecting as {role}: {e}"))
    }

    pub fn sessions(&self, database: &str, n: usize) -> Vec<Client> {
        (0..n).map(|_| self.connect(database)).collect()
    }

    /// Creates a database; with `with_dbopt`, also `CREATE EXTENSION dbopt` in it.
    pub fn create_database(&self, name: &str, with_dbopt: bool) -> Client {
        let mut admin = self.connect("postgres");
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{}\"",
                name.replace('"', "\"\"")
            ))
            .expect("CREATE DATABASE");
        let mut client = self.connect(name);
        if with_dbopt {
            client
                .batch_execute("CREATE EXTENSION dbopt")
                .expect("CREATE EXTENSION dbopt");
        }
        client
    }

    /// Shuts the server down cleanly (`pg_ctl stop -m fast`).
    pub fn stop(&mut self) {
        if self.running {
            self.pg_ctl(&["stop", "-m", "fast", "-w"]);
            self.running = false;
        }
    }

    /// Starts a stopped or crashed server again; after a crash this runs crash recovery.
    pub fn restart(&mut self) {
        self.stop();
        self.start_server();
    }

    /// Kills the postmaster and every backend with SIGKILL, as a power cut would (the files
    /// already written survive). Call [`Cluster::restart`] to recover.
    pub fn crash(&mut self) {
        let postmaster = self.postmaster_pid().expect("the server is not running");
        // Frozen, the postmaster cannot fork a replacement for a child killed below.
        unsafe { libc::kill(postmaster, libc::SIGSTOP) };
        let mut victims = children_of(postmaster);
        victims.push(postmaster);
        for &pid in &victims {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while victims.iter().any(|&pid| process_alive(pid)) {
            assert!(
                Instant::now() < deadline,
                "server processes survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The dead processes can linger as zombies until this machine's init reaps them, and a
        // zombie's PID still looks alive to the next postmaster's lock-file check. Nothing alive
        // holds the data directory any more, so the stale lock files can go.
        let _ = std::fs::remove_file(self.data_dir().join("postmaster.pid"));
        let _ = std::fs::remove_file(self.dir.join(format!(".s.PGSQL.{PORT}.lock")));
        self.running = false;
    }

    /// SIGKILLs one backend. The postmaster then ends every session and runs crash recovery,
    /// exactly as when a backend dies mid-operation in production. Returns once the postmaster
    /// has reset every session: before that, a new connection may still succeed and then be cut.
    pub fn kill_backend(&self, pid: i32) {
        assert!(
            children_of(self.postmaster_pid().unwrap()).contains(&pid),
            "{pid} is not a backend"
        );
        const RESET: &str = "all server processes terminated; reinitializing";
        let resets = self.log().matches(RESET).count();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches(RESET).count() == resets {
            assert!(
                Instant::now() < deadline,
                "the postmaster never reset after {pid} was killed\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server accepts connections (after a restart or a killed backend).
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self
                .config("postgres")
                .connect(NoTls)
                .and_then(|mut c| c.simple_query("SELECT 1").map(drop));
            match answer {
                Ok(()) => return,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("server not ready after {timeout:?}: {e}\n{}", self.log()),
            }
        }
    }

    fn start_server(&mut self) {
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            self.log_path().to_str().unwrap(),
        ]);
        self.running = true;
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let pidfile = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data_dir = self.data_dir();
        let mut all = vec!["-D", data_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run_as_server_user("pg_ctl", &all);
    }

    fn run_as_server_user(&self, program: &str, args: &[&str]) {
        let binary = pg_bindir().join(program);
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&binary);
            c
        } else {
            Command::new(&binary)
        };
        let out = command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        if !out.status.success() {
            panic!(
                "{program} {args:?} failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .postmaster_pid()
                .map(|pid| unsafe { libc::kill(pid, libc::SIGQUIT) });
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.postmaster_pid().is_some_and(process_alive) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::env::var_os("DBOPT_KEEP_CLUSTERS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn running_as_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// initdb refuses to run as root, so as root the cluster directory belongs to `postgres`.
fn hand_to_server_user(dir: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chown postgres {}",
            dir.display()
        );
    }
}

fn pg_config(arg: &str) -> String {
    let program = std::env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".to_owned());
    let out = Command::new(&program)
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {arg}: {e} (set PG_CONFIG)"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn pg_bindir() -> &'static Path {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR.get_or_init(|| PathBuf::from(pg_config("--bindir")))
}

fn assert_dbopt_installed() {
    let control = PathBuf::from(pg_config("--sharedir")).join("extension/dbopt.control");
    assert!(
        control.exists(),
        "dbopt is not installed into this PostgreSQL ({} is missing): run `cargo pgrx install \
         --pg-config $(which pg_config)` first, or `bash scripts/test.sh`",
        control.display()
    );
}

fn process_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); its /proc state says it has exited.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !state.is_empty()
        && !state
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
}

fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name: state, ppid, ...
            let after = stat.rsplit(')').next().unwrap_or("");
            after
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i32>().ok())
                == Some(parent)
        })
        .collect()
}
