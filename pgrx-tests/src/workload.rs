use postgres::{Client, Config, NoTls};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sessions running a statement loop in background threads until stopped, e.g. writers that
/// keep inserting while dbopt moves data. Each thread reconnects when its connection breaks
/// (a killed backend or a crashed server), so a workload outlives a crash.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<WorkloadReport>>,
}

/// What a workload did: successful iterations, and errors counted by SQLSTATE ("" when the
/// connection itself failed).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkloadReport {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

impl WorkloadReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// No workload runs longer than this, whatever the test forgets.
const HARD_LIMIT: Duration = Duration::from_secs(600);

impl Workload {
    /// Starts `sessions` threads, each with its own connection, calling
    /// `step(client, session_index, iteration)` in a loop.
    pub fn spawn<F>(config: Config, sessions: usize, step: F) -> Workload
    where
        F: Fn(&mut Client, usize, u64) -> Result<(), postgres::Error> + Send + Sync + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let step = Arc::new(step);
        let threads = (0..sessions)
            .map(|session| {
                let (stop, step, config) = (stop.clone(), step.clone(), config.clone());
                std::thread::spawn(move || run_session(&config, session, &stop, &*step))
            })
            .collect();
        Workload { stop, threads }
    }

    /// Stops every session after its current iteration and adds up what they did.
    pub fn stop(self) -> WorkloadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = WorkloadReport::default();
        for thread in self.threads {
            let report = thread.join().expect("a workload thread panicked");
            total.ok += report.ok;
            for (code, n) in report.errors {
                *total.errors.entry(code).or_default() += n;
            }
        }
        total
    }
}

fn run_session<F>(config: &Config, session: usize, stop: &AtomicBool, step: &F) -> WorkloadReport
where
    F: Fn(&mut Client, usize, u64) -> Result<(), postgres::Error>,
{
    let started = Instant::now();
    let mut report = WorkloadReport::default();
    let mut client: Option<Client> = None;
    let mut iteration = 0u64;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < HARD_LIMIT {
        let Some(c) = client.as_mut().filter(|c| !c.is_closed()) else {
            match config.connect(NoTls) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    *report
                        .errors
                        .entry(crate::sqlstate(&e).to_owned())
                        .or_default() += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            continue;
        };
        match step(c, session, iteration) {
            Ok(()) => report.ok += 1,
            Err(e) => {
                *report
                    .errors
                    .entry(crate::sqlstate(&e).to_owned())
                    .or_default() += 1
            }
        }
        iteration += 1;
    }
    report
}
