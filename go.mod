module github.com/convbn-diag/convbn-diag

go 1.26
