/** SQL literals for DuckDB, apart from the DuckDB client, so what only quotes does not load the database. */

export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
