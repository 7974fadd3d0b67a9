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
