package csapi

import "github.com/myelin-hs/myelin/impl/matrixerr"

func notYet(op string) error {
	return matrixerr.Unsupported(op + " is not implemented by this server yet")
}
