// The contract of `backend.rs`, kept by this backend: each method is the
// shared SQL of its concept file. A method missing here, or of another
// signature there, does not compile.

impl super::backend::Backend for Backend {
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        Backend::put_component(self, digest, bytes).await
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Backend::component(self, digest).await
    }

    async fn register_workflow(&self, definition: &Definition) -> Result<(u32, bool)> {
        Backend::register_workflow(self, definition).await
    }

    async fn workflow(&self, name: &str, version: Option<u32>) -> Result<Option<Workflow>> {
        Backend::workflow(self, name, version).await
    }

    async fn start_run(&self, new: &NewRun, lease: &Lease) -> Result<StartOutcome> {
        Backend::start_run(self, new, lease).await
    }

    async fn claim(&self, id: i64, lease: &Lease) -> Result<StartOutcome> {
        Backend::claim(self, id, lease).await
    }

    async fn claim_batch(&self, claim: &Claim, worker: &str, ttl: Duration, limit: u32) -> Result<Vec<(RunRecord, Lease)>> {
        Backend::claim_batch(self, claim, worker, ttl, limit).await
    }

    async fn extend_lease(&self, id: i64, lease: &Lease) -> Result<bool> {
        Backend::extend_lease(self, id, lease).await
    }

    async fn cancel(&self, id: i64, by: &str, parent: Option<&ParentFailure>, held: Option<&Lease>) -> Result<CancelOutcome> {
        Backend::cancel(self, id, by, parent, held).await
    }

    async fn reap(&self, cutoff: i64, batch: u32) -> Result<u64> {
        Backend::reap(self, cutoff, batch).await
    }

    async fn insert_run(&self, new: &NewRun) -> Result<InsertOutcome> {
        Backend::insert_run(self, new).await
    }

    async fn release(&self, id: i64, lease: &Lease) -> Result<()> {
        Backend::release(self, id, lease).await
    }

    async fn reset_for_retry(&self, id: i64, upgrade: Option<&WorkflowVersion>) -> Result<bool> {
        Backend::reset_for_retry(self, id, upgrade).await
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        Backend::run(self, id).await
    }

    async fn runs_by_key(&self, key: &str, workflow: Option<&str>) -> Result<Vec<RunRecord>> {
        Backend::runs_by_key(self, key, workflow).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        Backend::list_runs(self, filter).await
    }

    async fn count_runs(&self, filter: &RunFilter) -> Result<Vec<(String, i64)>> {
        Backend::count_runs(self, filter).await
    }

    async fn stored_response(&self, id: i64) -> Result<Option<StoredResponse>> {
        Backend::stored_response(self, id).await
    }

    async fn children(&self, parent: i64, max_bytes: usize) -> Result<Option<Vec<ChildRun>>> {
        Backend::children(self, parent, max_bytes).await
    }

    async fn step_events(&self, id: i64) -> Result<Vec<StepEvent>> {
        Backend::step_events(self, id).await
    }

    async fn commit_step(&self, c: &StepCommit) -> Result<CommitOutcome> {
        Backend::commit_step(self, c).await
    }

    async fn record_failure(&self, f: &FailureRecord) -> Result<FailureOutcome> {
        Backend::record_failure(self, f).await
    }

    async fn prune_workflows(&self, grace: Duration) -> Result<Pruned> {
        Backend::prune_workflows(self, grace).await
    }

    async fn baseline_run(&self, workflow: &str, key: &str, steps: &[String]) -> Result<()> {
        Backend::baseline_run(self, workflow, key, steps).await
    }


    async fn workflow_versions(&self, name: Option<&str>) -> Result<Vec<WorkflowVersion>> {
        Backend::workflow_versions(self, name).await
    }

    async fn response(
        &self,
        id: i64,
        make: &(dyn Fn(&RunRecord) -> StoredResponse + Sync),
    ) -> Result<Option<StoredResponse>> {
        Backend::response(self, id, make).await
    }

    async fn retries_waiting(&self, queues: &[String]) -> Result<bool> {
        Backend::retries_waiting(self, queues).await
    }

    async fn run_counts(&self) -> Result<Vec<RunCount>> {
        Backend::run_counts(self).await
    }

    async fn activity(&self, since: i64) -> Result<Activity> {
        Backend::activity(self, since).await
    }

    async fn ping(&self) -> Result<()> {
        Backend::ping(self).await
    }
}
