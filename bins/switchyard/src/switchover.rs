//! `switchyard switchover CLUSTER --to N`: asks the operator to move the primary to N.
//!
//! The operator runs the switchover with the same safety checks as the engine's own (the
//! candidate healthy, caught up within the lag bound, replicating from the primary, without
//! errant transactions, and every other instance able to replicate from it) and refuses it
//! with a Warning event otherwise.

use clap::Args as ClapArgs;
use kube::api::{Api, Patch, PatchParams};
use switchyard_kube::crd::MySQLCluster;
use switchyard_kube::status::ANNOTATION_SWITCHOVER_TO;

use crate::exit::Exit;

/// Arguments of `switchyard switchover`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The MySQLCluster's name.
    cluster: String,
    /// The ordinal of the instance to promote.
    #[arg(long)]
    to: u32,
    /// Its namespace (default: the kubeconfig's).
    #[arg(short, long)]
    namespace: Option<String>,
}

/// Why no switchover was requested.
#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    /// No such cluster.
    #[error("there is no MySQLCluster {0}")]
    NotFound(String),
    /// The ordinal is not an instance of the cluster.
    #[error("{cluster} has {replicas} instances (0 to {}): there is no instance {to}", replicas - 1)]
    NoSuchInstance {
        /// The cluster.
        cluster: String,
        /// Its size.
        replicas: i32,
        /// The ordinal asked for.
        to: u32,
    },
    /// The API failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// What the request did.
#[derive(Debug, PartialEq, Eq)]
pub enum Requested {
    /// The annotation is set; the operator acts on it.
    Requested,
    /// The instance already is the primary.
    AlreadyPrimary,
}

/// Sets the switchover annotation on `name`.
pub async fn request(
    api: &Api<MySQLCluster>,
    name: &str,
    to: u32,
) -> Result<Requested, SwitchoverError> {
    let cluster = api
        .get_opt(name)
        .await?
        .ok_or_else(|| SwitchoverError::NotFound(name.to_owned()))?;
    if i64::from(to) >= i64::from(cluster.spec.replicas) {
        return Err(SwitchoverError::NoSuchInstance {
            cluster: name.to_owned(),
            replicas: cluster.spec.replicas.max(1),
            to,
        });
    }
    if cluster.status.as_ref().and_then(|s| s.current_primary) == Some(to) {
        return Ok(Requested::AlreadyPrimary);
    }
    let patch = serde_json::json!({
        "metadata": { "annotations": { ANNOTATION_SWITCHOVER_TO: to.to_string() } }
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(Requested::Requested)
}

/// Runs `switchyard switchover`.
pub fn run(args: Args) -> Exit {
    crate::operator::block_on(async move {
        let client = crate::operator::client().await?;
        let ns = args
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let api: Api<MySQLCluster> = Api::namespaced(client, &ns);
        Ok(match request(&api, &args.cluster, args.to).await {
            Ok(Requested::Requested) => {
                println!(
                    "requested: the primary of {} moves to instance {} once the safety checks pass \
                     (kubectl describe mysqlcluster {} shows the events)",
                    args.cluster, args.to, args.cluster
                );
                Exit::Ok
            }
            Ok(Requested::AlreadyPrimary) => {
                println!("instance {} already is the primary", args.to);
                Exit::Ok
            }
            Err(e @ (SwitchoverError::NotFound(_) | SwitchoverError::NoSuchInstance { .. })) => {
                crate::exit::invalid(e)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Internal
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_fake_client::ClientBuilder;
    use switchyard_kube::crd::{MySQLClusterSpec, MySQLClusterStatus};

    async fn api() -> Api<MySQLCluster> {
        let mut c = MySQLCluster::new(
            "shop",
            MySQLClusterSpec {
                replicas: 3,
                ..MySQLClusterSpec::default()
            },
        );
        c.metadata.namespace = Some("db".into());
        c.status = Some(MySQLClusterStatus {
            current_primary: Some(0),
            ..MySQLClusterStatus::default()
        });
        let client = ClientBuilder::new()
            .with_resource::<MySQLCluster>()
            .with_status_subresource::<MySQLCluster>()
            .with_object(c)
            .build()
            .await
            .expect("fake client");
        Api::namespaced(client, "db")
    }

    #[tokio::test]
    async fn sets_the_annotation_for_an_existing_instance() {
        let api = api().await;
        assert_eq!(
            request(&api, "shop", 2).await.unwrap(),
            Requested::Requested
        );
        let c = api.get("shop").await.unwrap();
        assert_eq!(
            c.metadata.annotations.unwrap()[ANNOTATION_SWITCHOVER_TO],
            "2"
        );
    }

    #[tokio::test]
    async fn refuses_an_instance_that_does_not_exist_and_skips_the_primary() {
        let api = api().await;
        let err = request(&api, "shop", 3).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "shop has 3 instances (0 to 2): there is no instance 3"
        );
        assert_eq!(
            request(&api, "shop", 0).await.unwrap(),
            Requested::AlreadyPrimary
        );
        assert!(
            api.get("shop")
                .await
                .unwrap()
                .metadata
                .annotations
                .is_none()
        );
    }
}
