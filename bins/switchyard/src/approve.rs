//! `switchyard approve CLUSTER`: approves the supervised switchover the cluster waits for.
//!
//! The approval names exactly the pending switchover (revision, from, to), read from the
//! cluster's status; the operator acts on it only while that same switchover is pending, so
//! an approval never carries over to a later one.

use clap::Args as ClapArgs;
use kube::api::{Api, Patch, PatchParams};
use switchyard_kube::crd::MySQLCluster;
use switchyard_kube::status::{ANNOTATION_APPROVE, approval_value, pending_approval};
use switchyard_plan::decide::Approval;

use crate::exit::Exit;

/// Arguments of `switchyard approve`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The MySQLCluster's name.
    cluster: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(short, long)]
    namespace: Option<String>,
}

/// Why nothing was approved.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// No such cluster.
    #[error("there is no MySQLCluster {0}")]
    NotFound(String),
    /// No switchover waits for an approval.
    #[error("{cluster} has no switchover awaiting approval (phase {phase})")]
    NothingPending {
        /// The cluster.
        cluster: String,
        /// Its phase.
        phase: String,
    },
    /// The API failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// Sets the approval annotation for the switchover `name` waits for.
pub async fn approve(api: &Api<MySQLCluster>, name: &str) -> Result<Approval, ApproveError> {
    let cluster = api
        .get_opt(name)
        .await?
        .ok_or_else(|| ApproveError::NotFound(name.to_owned()))?;
    let status = cluster.status.unwrap_or_default();
    let Some(approval) = pending_approval(&status) else {
        return Err(ApproveError::NothingPending {
            cluster: name.to_owned(),
            phase: status.phase.unwrap_or_else(|| "unknown".into()),
        });
    };
    let patch = serde_json::json!({
        "metadata": { "annotations": { ANNOTATION_APPROVE: approval_value(&approval) } }
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(approval)
}

/// Runs `switchyard approve`.
pub fn run(args: Args) -> Exit {
    crate::operator::block_on(async move {
        let client = crate::operator::client().await?;
        let ns = args
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let api: Api<MySQLCluster> = Api::namespaced(client, &ns);
        Ok(match approve(&api, &args.cluster).await {
            Ok(a) => {
                println!(
                    "approved the switchover of revision {} from instance {} to instance {}",
                    a.revision, a.from, a.to
                );
                Exit::Ok
            }
            Err(e @ ApproveError::NothingPending { .. }) => {
                eprintln!("refused: {e}");
                Exit::Refused
            }
            Err(e @ ApproveError::NotFound(_)) => crate::exit::invalid(e),
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
    use switchyard_plan::Record;
    use switchyard_plan::record::Waiting;

    async fn api_with(status: MySQLClusterStatus) -> Api<MySQLCluster> {
        let mut c = MySQLCluster::new("shop", MySQLClusterSpec::default());
        c.metadata.namespace = Some("db".into());
        c.status = Some(status);
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
    async fn approves_exactly_the_pending_switchover() {
        let status = MySQLClusterStatus {
            record: Some(Record {
                waiting: Some(Waiting {
                    key: "approval:4:0->2".into(),
                    since: switchyard_plan::Timestamp(1),
                }),
                ..Record::default()
            }),
            ..MySQLClusterStatus::default()
        };
        let api = api_with(status).await;
        let a = approve(&api, "shop").await.expect("approved");
        assert_eq!((a.revision, a.from, a.to), (4, 0, 2));
        let c = api.get("shop").await.unwrap();
        assert_eq!(
            c.metadata.annotations.unwrap()[ANNOTATION_APPROVE],
            "4:0->2"
        );
    }

    #[tokio::test]
    async fn refuses_when_nothing_waits() {
        let api = api_with(MySQLClusterStatus {
            phase: Some("Ready".into()),
            ..MySQLClusterStatus::default()
        })
        .await;
        let err = approve(&api, "shop").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "shop has no switchover awaiting approval (phase Ready)"
        );
        assert!(
            api.get("shop")
                .await
                .unwrap()
                .metadata
                .annotations
                .is_none()
        );
        assert!(matches!(
            approve(&api, "nope").await.unwrap_err(),
            ApproveError::NotFound(_)
        ));
    }
}
