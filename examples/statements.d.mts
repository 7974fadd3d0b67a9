export interface StatementRow {
  id: number
  user_name: string
  email: string
  currency: string
  amount: string
  posted_at: Date
  memo: string
}
export function statementRow(i: number): StatementRow
export function statements(count: number): Generator<StatementRow>
export const STATEMENTS_SQL: string
export function createStatementsTable(pool: { query(text: string, values?: unknown[]): Promise<unknown> }, table: string, count: number): Promise<void>
