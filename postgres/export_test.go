package postgres

// DueSQL is the query Due runs, for the test that EXPLAINs it.
const DueSQL = dueSQL

// CountSQL is the query CountConnections runs, for the test that EXPLAINs it.
const CountSQL = countSQL
