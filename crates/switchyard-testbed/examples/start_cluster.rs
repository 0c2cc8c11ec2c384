//! Starts a cluster, prints how long each step took and the connection
//! details (no passwords), then stops it.
//!
//! `cargo run -p switchyard-testbed --example start_cluster -- mariadb-10.11 3`
//! (kinds: mariadb-10.5, mariadb-10.11, mariadb-11.8, mysql-9.7, galera).

use std::time::Instant;

use switchyard_testbed::{ServerKind, binaries, galera, replication, template::template};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let slug = args.next().unwrap_or_else(|| "mariadb-10.11".into());
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let kind = ServerKind::ALL
        .into_iter()
        .find(|k| k.slug() == slug || (slug == "galera" && *k == ServerKind::Galera))
        .ok_or_else(|| format!("unknown kind {slug}; one of mariadb-10.5, mariadb-10.11, mariadb-11.8, mysql-9.7, galera"))?;

    let t = Instant::now();
    let bins = tokio::task::spawn_blocking(move || binaries(kind)).await??;
    println!(
        "fetch:    {:>7.2?}  {kind} {} ({} packages)",
        t.elapsed(),
        bins.full_version(),
        bins.packages().len()
    );
    let t = Instant::now();
    let b = bins.clone();
    let tpl = tokio::task::spawn_blocking(move || template(&b)).await??;
    println!("template: {:>7.2?}  {}", t.elapsed(), tpl.display());
    let t = Instant::now();
    let cluster = if kind == ServerKind::Galera {
        galera(n).await?
    } else {
        replication(kind, n).await?
    };
    println!("cluster:  {:>7.2?}  {n} instances", t.elapsed());
    for i in cluster.instances() {
        println!(
            "  {} port {} pid {:?} log {}",
            i.name(),
            i.port(),
            i.pid(),
            i.log_path().display()
        );
    }
    let t = Instant::now();
    drop(cluster);
    println!("drop:     {:>7.2?}", t.elapsed());
    Ok(())
}
