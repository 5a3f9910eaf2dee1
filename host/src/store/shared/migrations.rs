// Schema migrations.
// Written once for both backends: see `prelude.rs`.

/// Applies, on `tx`, the migrations `_acidic_migrations` does not record yet,
/// in order, recording each one's SHA-256. A migration already applied whose
/// text has changed since is refused: the database was built by other SQL
/// than this binary carries. (One applied before checksums were recorded
/// gets its checksum on first sight.)
async fn apply_migrations(
    tx: &mut Transaction<'static, Db>,
    migrations: &[(i64, &'static str, &'static str)],
) -> Result<()> {
    for &(version, name, sql) in migrations {
        let checksum = crate::run::sha256_hex(sql.as_bytes());
        let applied: Option<Option<String>> =
            sqlx::query_scalar("SELECT checksum FROM _acidic_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut **tx)
                .await?;
        match applied {
            Some(Some(recorded)) if recorded == checksum => continue,
            Some(Some(_)) => return Err(Error::MigrationChanged { version, name }),
            Some(None) => {
                sqlx::query("UPDATE _acidic_migrations SET checksum = $1 WHERE version = $2")
                    .bind(&checksum)
                    .bind(version)
                    .execute(&mut **tx)
                    .await?;
                continue;
            }
            None => {}
        }
        sqlx::raw_sql(sql)
            .execute(&mut **tx)
            .await
            .map_err(|source| Error::Migration {
                version,
                name,
                source,
            })?;
        sqlx::query(
            "INSERT INTO _acidic_migrations (version, name, applied_at, checksum) VALUES ($1, $2, $3, $4)",
        )
        .bind(version)
        .bind(name)
        .bind(now_ms())
        .bind(&checksum)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
