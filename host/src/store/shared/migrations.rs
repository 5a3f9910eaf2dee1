// Schema migrations.
// Written once for both backends: see `prelude.rs`.

/// Applies, on `tx`, the migrations `_acidic_migrations` does not record yet, in order.
async fn apply_migrations(
    tx: &mut Transaction<'static, Db>,
    migrations: &[(i64, &'static str, &'static str)],
) -> Result<()> {
    for &(version, name, sql) in migrations {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM _acidic_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut **tx)
                .await?;
        if applied.is_some() {
            continue;
        }
        sqlx::raw_sql(sql)
            .execute(&mut **tx)
            .await
            .map_err(|source| Error::Migration {
                version,
                name,
                source,
            })?;
        sqlx::query("INSERT INTO _acidic_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(version)
            .bind(name)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
