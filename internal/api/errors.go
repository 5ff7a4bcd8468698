// Package api holds hal0's wire types: the error envelope and its stable
// codes, shared by hal0-apid, the CLI, the pull worker's job records and the
// dashboard. It imports nothing outside the standard library so clients
// stay light.
package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is the one error type that crosses process boundaries. Code is
// stable and machine-readable; Message is for people and says what to do.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Status is the HTTP status the API answers with.
	Status int `json:"-"`
	// Err is the underlying cause, kept for errors.Is/As; never serialised.
	Err error `json:"-"`
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error. A %w verb in format also sets Err.
func Errorf(code string, status int, format string, a ...any) *Error {
	err := fmt.Errorf(format, a...)
	return &Error{Code: code, Status: status, Message: err.Error(), Err: errors.Unwrap(err)}
}

// Envelope is the JSON body of every error response:
// {"error":{"code":"…","message":"…"}}.
type Envelope struct {
	Error *Error `json:"error"`
}

// Stable error codes. Never rename one: scripts and the dashboard match on
// them. New codes may be added.
const (
	CodeInternal     = "internal"
	CodeBadRequest   = "bad_request"
	CodeInvalidRef   = "model.invalid_ref"
	CodeNotFound     = "not_found"
	CodeModelMissing = "model.not_found"
	CodeJobMissing   = "pull.job_not_found"
	CodeConflict     = "conflict"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeTooLarge     = "request_too_large"

	// Pull outcomes.
	CodeGated            = "pull.gated"
	CodeRepoNotFound     = "pull.repo_not_found"
	CodeRevisionNotFound = "pull.revision_not_found"
	CodeEntryNotFound    = "pull.entry_not_found"
	CodeAuth             = "pull.auth_failed"
	CodeHubForbidden     = "pull.forbidden"
	CodeNoMatch          = "pull.no_matching_files"
	CodeAmbiguous        = "pull.ambiguous_quant"
	CodeUnsafePath       = "pull.unsafe_path"
	CodeNoSpace          = "pull.no_space"
	CodeChecksum         = "pull.checksum_mismatch"
	CodeNetwork          = "pull.network"
	CodeBadResponse      = "pull.bad_response"
	CodeRateLimited      = "pull.rate_limited"
	CodeOffline          = "pull.offline"
	CodeCancelled        = "pull.cancelled"
	CodeBusy             = "pull.busy"
	CodeUnsupported      = "pull.unsupported"
	CodeWorkerDied       = "pull.worker_died"
	CodeIO               = "pull.io"
	CodeToolMissing      = "pull.tool_missing"
	CodeImage            = "pull.image_failed"

	// Catalog.
	CodeCatalogMissing = "catalog.not_found"
	CodeCatalogSource  = "catalog.source_not_found"

	// FLM pulls.
	CodeFLMUnavailable = "pull.flm_unavailable"       // flm list -j failed: no toolbox, no flm
	CodeFLMUnknownTag  = "pull.flm_unknown_tag"       // not in FLM's catalog
	CodeFLMFailed      = "pull.flm_failed"            // flm pull exited non-zero
	CodeFLMCacheMount  = "pull.flm_cache_not_mounted" // flm does not write where hal0 looks

	// Slots (the Python hal0's names where it had one).
	CodeSlotNotFound = "slot.not_found"
	CodeSlotIllegal  = "slot.illegal_transition"
	CodeSlotConfig   = "slot.config_error"
	CodeSlotBackend  = "slot.backend_mismatch"
	CodeSlotDisabled = "slot.disabled"
	// CodeSlotNPU: two enabled slots use the NPU, which has one hardware
	// context.
	CodeSlotNPU         = "slot.npu_exclusivity_violation"
	CodeLogsUnavailable = "logs.unavailable"
)

// codeStatus maps codes to HTTP statuses for errors built without one.
var codeStatus = map[string]int{
	CodeBadRequest: http.StatusBadRequest, CodeInvalidRef: http.StatusBadRequest,
	CodeNotFound: http.StatusNotFound, CodeModelMissing: http.StatusNotFound, CodeJobMissing: http.StatusNotFound,
	CodeConflict: http.StatusConflict, CodeUnauthorized: http.StatusUnauthorized, CodeForbidden: http.StatusForbidden,
	CodeTooLarge: http.StatusRequestEntityTooLarge,
	CodeGated:    http.StatusForbidden, CodeRepoNotFound: http.StatusNotFound, CodeRevisionNotFound: http.StatusNotFound,
	CodeEntryNotFound: http.StatusNotFound, CodeAuth: http.StatusUnauthorized, CodeHubForbidden: http.StatusForbidden,
	CodeNoMatch: http.StatusNotFound, CodeAmbiguous: http.StatusConflict, CodeUnsafePath: http.StatusBadGateway,
	CodeNoSpace: http.StatusInsufficientStorage, CodeChecksum: http.StatusBadGateway, CodeNetwork: http.StatusBadGateway,
	CodeBadResponse: http.StatusBadGateway, CodeRateLimited: http.StatusTooManyRequests, CodeOffline: http.StatusServiceUnavailable,
	CodeCancelled: http.StatusConflict, CodeBusy: http.StatusConflict, CodeUnsupported: http.StatusBadRequest,
	CodeWorkerDied: http.StatusInternalServerError, CodeIO: http.StatusInternalServerError,
	CodeToolMissing: http.StatusNotImplemented, CodeImage: http.StatusInternalServerError,
	CodeCatalogMissing: http.StatusNotFound, CodeCatalogSource: http.StatusNotFound,
	CodeSlotNotFound: http.StatusNotFound, CodeSlotIllegal: http.StatusConflict, CodeSlotConfig: http.StatusBadRequest,
	CodeSlotBackend: http.StatusBadRequest, CodeSlotDisabled: http.StatusConflict,
	CodeLogsUnavailable: http.StatusServiceUnavailable,
	CodeFLMUnavailable:  http.StatusServiceUnavailable, CodeFLMUnknownTag: http.StatusNotFound,
	CodeFLMFailed: http.StatusBadGateway, CodeFLMCacheMount: http.StatusInternalServerError,
	CodeSlotNPU: http.StatusConflict,
}

// StatusOf returns the HTTP status for err: an *Error's own status, the
// status of its code, or 500.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		if e.Status != 0 {
			return e.Status
		}
		if s, ok := codeStatus[e.Code]; ok {
			return s
		}
	}
	return http.StatusInternalServerError
}

// CodeOf returns err's code, or CodeInternal.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		return e.Code
	}
	return CodeInternal
}

// Exit codes of hal0 and hal0-pull, documented in the README.
const (
	ExitOK        = 0
	ExitFailed    = 1
	ExitUsage     = 2
	ExitNotFound  = 3
	ExitConflict  = 4
	ExitCancelled = 5
	ExitNoSpace   = 6
	ExitAuth      = 7
	ExitNoAPI     = 8
)

// ExitCode maps an error to a process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	switch CodeOf(err) {
	case CodeBadRequest, CodeInvalidRef, CodeUnsupported, CodeSlotBackend:
		return ExitUsage
	case CodeNotFound, CodeModelMissing, CodeJobMissing, CodeRepoNotFound, CodeRevisionNotFound, CodeEntryNotFound, CodeNoMatch, CodeSlotNotFound,
		CodeCatalogMissing, CodeCatalogSource, CodeFLMUnknownTag:
		return ExitNotFound
	case CodeConflict, CodeBusy, CodeAmbiguous, CodeSlotIllegal, CodeSlotDisabled, CodeSlotNPU:
		return ExitConflict
	case CodeCancelled:
		return ExitCancelled
	case CodeNoSpace:
		return ExitNoSpace
	case CodeGated, CodeAuth, CodeHubForbidden, CodeUnauthorized, CodeForbidden:
		return ExitAuth
	}
	return ExitFailed
}
