//! The IO half of policies: read `policies/*.yaml` into a [`PolicySet`], and keep the serving
//! set current by polling the folder (contents, not mtimes). Deciding lives in `decide::policy`.
#![allow(
    dead_code,
    reason = "used by cli::policy (next commit) and serve (the lead)"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::decide::policy::{PolicyError, PolicySet, sources_digest};

/// Every `*.yaml` and `*.yml` file of `dir` (not recursing) with its contents, sorted by path.
fn read_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, PolicyError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| PolicyError::Read { path, error }
    };
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let path = entry.map_err(read_err(dir))?.path();
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
            sources.push((path, text));
        }
    }
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(sources)
}

/// Compile every `*.yaml`/`*.yml` file of `dir`, in file-name order. A missing or unreadable
/// folder is an error (an empty folder is not: it yields the deny-everything set).
pub fn read_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
    PolicySet::compile(&read_sources(dir)?)
}

/// Keep `current` in step with `dir` until `stop`. Every `period` (the first poll at once) the
/// folder is read; once its contents differ from those `current` was compiled from and have
/// stayed the same for two polls in a row (so a file caught half-written is not acted on),
/// they are compiled and swapped in (`on_change(Ok(()))`), or the running set is kept and the
/// reason reported (`on_change(Err(..))`, once per distinct broken state).
pub async fn watch(
    dir: PathBuf,
    current: Arc<ArcSwap<PolicySet>>,
    period: Duration,
    stop: CancellationToken,
    on_change: impl Fn(Result<(), &PolicyError>) + Send + 'static,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the previous poll saw, and what the last report was about (a digest or an error).
    let mut previous: Option<String> = None;
    let mut reported: Option<String> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // Reading and compiling run off the runtime threads (many regexes can take a while).
        let (dir, at) = (dir.clone(), dir.clone());
        let sources = tokio::task::spawn_blocking(move || read_sources(&dir))
            .await
            .unwrap_or_else(|e| Err(blocking_failed(&at, e)));
        let state = match &sources {
            Ok(sources) => sources_digest(sources),
            Err(e) => format!("error: {e}"),
        };
        if previous.replace(state.clone()).as_ref() != Some(&state) {
            continue; // changed since the last poll: wait until it settles
        }
        if state == current.load().digest() {
            reported = None; // in step (again, say after a broken edit was reverted)
            continue;
        }
        if reported.as_ref() == Some(&state) {
            continue;
        }
        reported = Some(state);
        let compiled = match sources {
            Ok(sources) => tokio::task::spawn_blocking(move || PolicySet::compile(&sources))
                .await
                .unwrap_or_else(|e| Err(blocking_failed(&at, e))),
            Err(e) => Err(e),
        };
        match compiled {
            Ok(set) => {
                current.store(Arc::new(set));
                on_change(Ok(()));
            }
            Err(e) => on_change(Err(&e)),
        }
    }
}

/// A reading or compiling task that died (it does not panic; this is for completeness).
fn blocking_failed(dir: &Path, e: tokio::task::JoinError) -> PolicyError {
    PolicyError::Read {
        path: dir.to_path_buf(),
        error: std::io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use tokio::sync::mpsc;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn policy(rules: &[&str]) -> String {
        let mut s = "version: v1\nrules:\n".to_owned();
        for id in rules {
            s.push_str(&format!("  - {{ id: {id}, decision: ALLOW }}\n"));
        }
        s
    }

    #[test]
    fn read_dir_takes_yaml_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.yaml"), policy(&["b1", "b2"])).unwrap();
        fs::write(dir.path().join("a.yml"), policy(&["a1"])).unwrap();
        fs::write(dir.path().join("README.md"), "not a policy").unwrap();
        fs::write(dir.path().join("c.yaml.bak"), "broken: [").unwrap();
        fs::create_dir(dir.path().join("d.yaml")).unwrap();
        let set = read_dir(dir.path()).unwrap();
        assert_eq!(set.rule_count(), 3);
        assert_eq!(
            set.files(),
            [dir.path().join("a.yml"), dir.path().join("b.yaml")]
        );
        let ids: Vec<&str> = set.rules().map(|r| r.id).collect();
        assert_eq!(ids, ["a1", "b1", "b2"]);

        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_dir(empty.path()).unwrap().rule_count(), 0);

        let missing = dir.path().join("nope");
        let err = read_dir(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read {}: ", missing.display())),
            "{err}"
        );
        fs::write(dir.path().join("z.yaml"), "version: v1\nrules: [").unwrap();
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("z.yaml: invalid YAML"), "{err}");
    }

    /// The next report of the watcher, within [`DEADLINE`].
    async fn next(rx: &mut mpsc::UnboundedReceiver<Result<(), String>>) -> Result<(), String> {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("the watcher reports in time")
            .expect("the watcher is running")
    }

    #[tokio::test]
    async fn watch_swaps_good_changes_and_keeps_the_old_set_on_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("00.yaml");
        fs::write(&file, policy(&["one"])).unwrap();
        let current = Arc::new(ArcSwap::from_pointee(read_dir(dir.path()).unwrap()));
        let stop = CancellationToken::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(watch(
            dir.path().to_path_buf(),
            Arc::clone(&current),
            Duration::from_millis(10),
            stop.clone(),
            move |r| {
                let _ = tx.send(r.map_err(ToString::to_string));
            },
        ));

        // a good change: swapped and reported
        fs::write(&file, policy(&["one", "two"])).unwrap();
        assert_eq!(next(&mut rx).await, Ok(()));
        assert_eq!(current.load().rule_count(), 2);

        // a broken new file: the old set stays, the error names the file and the key
        fs::write(
            dir.path().join("10.yaml"),
            "version: v1\nrules: [{ id: x, decision: MAYBE }]\n",
        )
        .unwrap();
        let err = next(&mut rx).await.unwrap_err();
        assert!(err.contains("10.yaml: rule `x`"), "{err}");
        assert!(err.contains("key `decision`"), "{err}");
        assert_eq!(current.load().rule_count(), 2);

        // fixed: swapped in
        fs::write(dir.path().join("10.yaml"), policy(&["three"])).unwrap();
        assert_eq!(next(&mut rx).await, Ok(()));
        assert_eq!(current.load().rule_count(), 3);

        // same length, same mtime second: contents are compared, not only mtimes
        fs::write(
            dir.path().join("10.yaml"),
            policy(&["three"]).replace("ALLOW", "DENY!"),
        )
        .unwrap();
        let err = next(&mut rx).await.unwrap_err();
        assert!(err.contains("unknown decision \"DENY!\""), "{err}");
        fs::write(dir.path().join("10.yaml"), policy(&["thref"])).unwrap();
        assert_eq!(next(&mut rx).await, Ok(()));
        let ids: Vec<String> = current.load().rules().map(|r| r.id.to_owned()).collect();
        assert_eq!(ids, ["one", "two", "thref"]);

        // a removed file counts as a change
        fs::remove_file(dir.path().join("10.yaml")).unwrap();
        assert_eq!(next(&mut rx).await, Ok(()));
        assert_eq!(current.load().rule_count(), 2);

        // the folder gone: reported, old set kept
        let moved = dir.path().with_extension("moved");
        fs::rename(dir.path(), &moved).unwrap();
        let err = next(&mut rx).await.unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
        assert_eq!(current.load().rule_count(), 2);
        // back as it was: in step, nothing to report
        fs::rename(&moved, dir.path()).unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
        assert!(quiet.is_err(), "no report without a change: {quiet:?}");
        stop.cancel();
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the watcher stops")
            .unwrap();
    }
}
