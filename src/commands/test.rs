//! `test`: run the collectors once (or N times), exactly as the daemon
//! would build them, and report each one's time and error, without HTTP.

use herakles_core::BuildContext;

use crate::config::Config;
use crate::exporter::{collectors_or_build, runtime, Exporter};
use crate::testdata::Source;

/// `test`: collect `iterations` times without HTTP and report each
/// collector; non-zero when one failed.
pub fn run(
    config: Config,
    ctx: &BuildContext,
    iterations: u32,
    verbose: bool,
    test_data: Option<Source>,
) -> i32 {
    crate::logging::init(config.log_level, config.log_format);
    let collectors = match collectors_or_build(test_data, ctx, &config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let rt = match runtime(&config) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let exporter = Exporter::new(config, collectors);
    let mut failed = false;
    for i in 1..=iterations {
        let scraper = exporter.scraper.clone();
        let out = rt.block_on(async move { scraper.scrape(scraper.all()).await });
        println!(
            "iteration {i}: {} bytes in {:.3}s",
            out.text.len(),
            out.duration.as_secs_f64()
        );
        for o in &out.outcomes {
            match &o.error {
                None => println!("  ok    {:<12} {:.4}s", o.name, o.duration.as_secs_f64()),
                Some(e) => {
                    failed = true;
                    println!(
                        "  FAIL  {:<12} {:.4}s  {e}",
                        o.name,
                        o.duration.as_secs_f64()
                    );
                }
            }
        }
        if verbose {
            print!("{}", String::from_utf8_lossy(&out.text));
        }
    }
    exporter.scraper.shutdown();
    i32::from(failed)
}
