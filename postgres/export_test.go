package postgres

// DueSQL is the query Due runs, for the test that EXPLAINs it.
const DueSQL = dueSQL
