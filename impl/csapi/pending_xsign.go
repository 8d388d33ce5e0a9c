package csapi

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
)

// Operations of cross-signing (issue 13) that are not served yet: each answers 501
// M_UNRECOGNIZED and is marked not served in the coverage table
// (coverage.go), so /versions does not claim the versions that need them.

func (s *Server) UploadCrossSigningKeys(context.Context, clientapi.UploadCrossSigningKeysRequestObject) (clientapi.UploadCrossSigningKeysResponseObject, error) {
	return nil, notYet("uploadCrossSigningKeys")
}

func (s *Server) UploadCrossSigningSignatures(context.Context, clientapi.UploadCrossSigningSignaturesRequestObject) (clientapi.UploadCrossSigningSignaturesResponseObject, error) {
	return nil, notYet("uploadCrossSigningSignatures")
}
