//! `kiln pipeline watch`: start executions on commits, by polling the pipeline's repositories or
//! (with `--install-hook`) from a hook each commit runs.

use kiln::pipeline::run as driver;
use kiln::pipeline::watch;

use super::super::exit;
use super::super::options::GlobalArgs;
use super::{WatchArgs, prepare};

/// Runs `kiln pipeline watch`; its exit code.
pub async fn run(global: &GlobalArgs, args: &WatchArgs) -> u8 {
    let (pipeline, ctx) = match prepare(global, &args.file).await {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    if args.install_hook || args.uninstall_hook {
        return hooks(global, args, &ctx, &pipeline);
    }
    let how = if args.once {
        "Webhook"
    } else {
        "PollForSourceChanges"
    };
    let mut running = tokio::task::JoinSet::new();
    let mut failed = false;
    loop {
        match watch::look(&ctx, &pipeline, how) {
            Ok(starts) => {
                for start in starts {
                    match driver::create(&ctx, &pipeline, start) {
                        Ok((execution, lock)) => {
                            ctx.say(&format!(
                                "{}: execution {} started ({})",
                                pipeline.name, execution.id, execution.trigger.trigger_detail
                            ));
                            running.spawn(driver::drive(ctx.clone(), execution, lock));
                        }
                        Err(e) => {
                            eprintln!("error: {e}");
                            failed = true;
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                if args.once {
                    return exit::FAILED;
                }
            }
        }
        // Report what ended since the last look.
        while let Some(done) = running.try_join_next() {
            report(done, &mut failed);
        }
        if args.once {
            while let Some(done) = running.join_next().await {
                report(done, &mut failed);
            }
            return if failed { exit::FAILED } else { exit::OK };
        }
        tokio::time::sleep(args.interval).await;
    }
}

fn report(
    done: Result<kiln::pipeline::record::Execution, tokio::task::JoinError>,
    failed: &mut bool,
) {
    match done {
        Ok(e) => {
            out!("{} execution {} {}", e.pipeline, e.id, e.status.as_str());
            if e.status != kiln::pipeline::record::Status::Succeeded {
                *failed = true;
            }
        }
        Err(e) => {
            eprintln!("error: an execution's driver ended abnormally: {e}");
            *failed = true;
        }
    }
}

/// Installs (or removes) the hooks that run `kiln pipeline watch --once` on each commit, in
/// every local repository the pipeline's git sources come from.
fn hooks(
    global: &GlobalArgs,
    args: &WatchArgs,
    ctx: &kiln::pipeline::Context,
    pipeline: &kiln::spec::pipeline::Pipeline,
) -> u8 {
    let mut repos = Vec::new();
    for (_, name, _) in watch::git_sources(pipeline) {
        match kiln::pipeline::source_repository(ctx, &name) {
            Ok(repo) if !repos.contains(&repo) => repos.push(repo),
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        }
    }
    if repos.is_empty() {
        eprintln!("error: the pipeline has no git source to install a hook for");
        return exit::BAD_INPUT;
    }
    if args.uninstall_hook {
        for repo in &repos {
            if let Err(e) = kiln::pipeline::source::uninstall_hook(repo) {
                eprintln!("error: {}: {e}", repo.display());
                return exit::FAILED;
            }
            out!("removed kiln's hook from {}", repo.display());
        }
        return exit::OK;
    }
    // What the hook runs: this kiln, with the same folders and the same pipeline.
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot tell where this kiln is: {e}");
            return exit::INTERNAL;
        }
    };
    let mut words = vec![
        exe.to_string_lossy().into_owned(),
        "--state-dir".into(),
        global.state_dir().to_string_lossy().into_owned(),
    ];
    if let Some(cache) = global.cache_dir() {
        words.push("--cache-dir".into());
        words.push(cache.to_string_lossy().into_owned());
    }
    words.extend(["pipeline".into(), "watch".into(), "--once".into()]);
    words.push(ctx.file.to_string_lossy().into_owned());
    if let Some(name) = &args.file.pipeline {
        words.extend(["--pipeline".into(), name.clone()]);
    }
    for (k, v) in &args.file.parameters {
        words.extend(["--parameter".into(), format!("{k}={v}")]);
    }
    let command = shell_words::join(&words);
    // What is there now is the starting point: only later commits start executions.
    if let Err(e) = watch::look(ctx, pipeline, "Webhook") {
        eprintln!("error: {e}");
        return exit::FAILED;
    }
    for repo in &repos {
        match kiln::pipeline::source::install_hook(repo, &command) {
            Ok(path) => out!(
                "installed {}: each commit starts what the pipeline's triggers call for",
                path.display()
            ),
            Err(e) => {
                eprintln!("error: {}: {e}", repo.display());
                return exit::FAILED;
            }
        }
    }
    exit::OK
}
