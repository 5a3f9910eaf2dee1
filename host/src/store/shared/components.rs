// Component bytes and workflow versions.
// Written once for both backends: see `prelude.rs`.

impl Backend {
    /// Stores component bytes under their digest; if present, marks it as
    /// stored now (so `prune` leaves it alone while its registration ends).
    pub(super) async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO components (digest, bytes, size, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at",
        )
            .bind(digest)
            .bind(bytes)
            .bind(bytes.len() as i64)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The bytes of the component with `digest`.
    pub(super) async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM components WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores `definition` as a new version unless an identical one exists.
    /// Returns the version and whether it is new.
    pub(super) async fn register_workflow(&self, definition: &Definition) -> Result<(u32, bool)> {
        let hash = definition.hash();
        let text = serde_json::to_string(definition).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut tx = self.begin().await?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM workflows WHERE name = $1 AND definition_hash = $2",
        )
        .bind(&definition.name)
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(v) = existing {
            return Ok((v as u32, false));
        }
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM workflows WHERE name = $1",
        )
        .bind(&definition.name)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO workflows (name, version, definition_hash, definition, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&definition.name)
            .bind(version)
            .bind(&hash)
            .bind(&text)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((version as u32, true))
    }

    /// Version `version` of workflow `name`, or its latest version.
    pub(super) async fn workflow(&self, name: &str, version: Option<u32>) -> Result<Option<Workflow>> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT version, definition_hash, definition FROM workflows WHERE name = $1 AND version = $2")
                    .bind(name)
                    .bind(i64::from(v))
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(
                    "SELECT version, definition_hash, definition FROM workflows WHERE name = $1 \
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.map(|row| {
            let text: String = row.try_get("definition")?;
            let definition: Definition = serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("definition of workflow `{name}`: {e}")))?;
            Ok(Workflow {
                version: row.try_get::<i64, _>("version")? as u32,
                hash: row.try_get("definition_hash")?,
                definition,
            })
        })
        .transpose()
    }

    /// Every version of workflow `name` (of all workflows if `None`).
    pub(super) async fn workflow_versions(&self, name: Option<&str>) -> Result<Vec<WorkflowVersion>> {
        let rows = sqlx::query(
            "SELECT name, version, definition_hash, created_at FROM workflows \
             WHERE ($1 IS NULL OR name = $2) ORDER BY name, version",
        )
        .bind(name)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WorkflowVersion {
                    name: row.try_get("name")?,
                    version: u32::try_from(row.try_get::<i64, _>("version")?)
                        .map_err(|_| Error::Corrupt("a workflow version out of range".into()))?,
                    definition_hash: row.try_get("definition_hash")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Deletes the workflow versions no run uses and that are not their
    /// workflow's latest, and then the components no version names. What
    /// changed within `grace` (a version superseded, a component stored)
    /// is kept: a run or a registration may be between its read and its
    /// write.
    pub(super) async fn prune_workflows(&self, grace: Duration) -> Result<Pruned> {
        let mut tx = self.begin().await?;
        let cutoff = now_ms() - ms(grace);
        let rows = sqlx::query(
            "DELETE FROM workflows WHERE \
               EXISTS (SELECT 1 FROM workflows newer WHERE newer.name = workflows.name AND newer.version > workflows.version) \
               AND NOT EXISTS (SELECT 1 FROM workflows newer WHERE newer.name = workflows.name \
                 AND newer.version > workflows.version AND newer.created_at >= $1) \
               AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.workflow = workflows.name \
                 AND runs.workflow_version = workflows.version) \
             RETURNING name, version",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let mut versions = rows
            .iter()
            .map(|row| Ok((row.try_get::<String, _>("name")?, row.try_get::<i64, _>("version")? as u32)))
            .collect::<Result<Vec<_>>>()?;
        versions.sort();
        let mut named = std::collections::HashSet::new();
        let definitions: Vec<String> = sqlx::query_scalar("SELECT definition FROM workflows")
            .fetch_all(&mut *tx)
            .await?;
        for text in &definitions {
            let definition: Definition = serde_json::from_str(text)
                .map_err(|e| Error::Corrupt(format!("a stored workflow definition: {e}")))?;
            named.extend(definition.steps.into_iter().map(|s| s.component));
        }
        let stored: Vec<String> = sqlx::query_scalar("SELECT digest FROM components WHERE created_at < $1")
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
        let mut components = Vec::new();
        for digest in stored.into_iter().filter(|d| !named.contains(d)) {
            sqlx::query("DELETE FROM components WHERE digest = $1")
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
            components.push(digest);
        }
        components.sort();
        tx.commit().await?;
        Ok(Pruned { versions, components })
    }
}
