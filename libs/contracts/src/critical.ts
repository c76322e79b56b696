/**
 * Critical operations (certificates, credentials) and the two-phase commit messages that carry them
 * (the rules are sync-core's two-phase.ts; docs/critical-operations.md tells the whole story).
 *
 * - Operator API, request/reply on `<ns>.admin.critical.begin|show|list` (and HTTP on change-log).
 * - Coordinator -> agent, request/reply on `<ns>.tpc.agent.<agentId>`: `prepare` (answered with a
 *   vote) and `decision` (answered with an acknowledgement).
 * - Agent -> coordinator, request/reply on `<ns>.tpc.status.<agentId>`: an agent in doubt asks for the
 *   decision.
 */
import { createPrivateKey, createPublicKey, sign as signBytes, verify as verifyBytes } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '@fleet/sync-core';
import { AgentIdSchema, NonNegativeIntSchema, PositiveIntSchema, ProtocolSchema, UuidSchema } from './change';
import { decodeMessage } from './codec';
import { decodeReply } from './messages';
import type { Reply } from './messages';
import { MAX_REASON_LENGTH } from './limits';

/** A critical message's size bound: an operation carries one certificate or one credential. */
export const MAX_CRITICAL_MESSAGE_BYTES = 64 * 1024;
/** Hosts in one critical operation: every one of them is a participant that must vote in time. */
export const MAX_CRITICAL_AGENTS = 1000;
/** Bounds of the vote timeout an operator may ask for. */
export const MIN_VOTE_TIMEOUT_MS = 100;
export const MAX_VOTE_TIMEOUT_MS = 120_000;

const NameSchema = z
  .string({ error: 'expected a string' })
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, { error: 'expected a name: 1-128 of [A-Za-z0-9._-], starting with a letter or digit' });

/** A host certificate, PEM. The private key never travels: agents generate their own and the server signs. */
export const CertificateValueSchema = z.strictObject({
  pem: z
    .string({ error: 'expected a string' })
    .max(16 * 1024, { error: 'longer than 16384 characters' })
    .regex(/^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/, { error: 'expected one PEM certificate' }),
  /** ISO 8601 UTC: an agent votes no on a certificate that has already expired by its clock. */
  notAfter: z.iso.datetime({ error: 'expected an ISO 8601 UTC date-time' }),
});

/** A local user's credential: a crypt(3) hash (`$id$...`), never a clear-text password. */
export const CredentialValueSchema = z.strictObject({
  user: z.string({ error: 'expected a string' }).regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: 'expected a user name: [a-z_][a-z0-9_-]{0,31}' }),
  hash: z
    .string({ error: 'expected a string' })
    .max(512, { error: 'longer than 512 characters' })
    .regex(/^\$[0-9a-z]+\$[!-~]+$/, { error: 'expected a crypt(3) hash such as $6$... or $argon2id$... (never a clear-text password)' }),
});

export const CriticalOperationSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('certificate'), name: NameSchema, value: CertificateValueSchema }),
  z.strictObject({ kind: z.literal('credential'), name: NameSchema, value: CredentialValueSchema }),
]);
export type CriticalOperation = z.output<typeof CriticalOperationSchema>;

/** An Ed25519 signature of the coordinator, base64 (see `tpcSigningBytes`). */
const SignatureSchema = z.string({ error: 'expected a string' }).regex(/^[A-Za-z0-9+/]{86}==$/, { error: 'expected an Ed25519 signature, base64' });

const VoteSchema = z.discriminatedUnion('vote', [
  z.strictObject({ vote: z.literal('yes') }),
  z.strictObject({ vote: z.literal('no'), reason: z.string({ error: 'expected a string' }).max(MAX_REASON_LENGTH) }),
]);

// --- coordinator -> agent: `<ns>.tpc.agent.<agentId>` ---

export const TpcAgentRequestSchema = z.discriminatedUnion('t', [
  z.strictObject({
    protocol: ProtocolSchema,
    t: z.literal('prepare'),
    txid: UuidSchema,
    operation: CriticalOperationSchema,
    /** Epoch ms: the coordinator counts a vote after this as no. */
    deadline: NonNegativeIntSchema,
    sig: SignatureSchema.exactOptional(),
  }),
  z.strictObject({ protocol: ProtocolSchema, t: z.literal('decision'), txid: UuidSchema, decision: z.enum(['commit', 'abort']), sig: SignatureSchema.exactOptional() }),
]);
export type TpcAgentRequest = z.output<typeof TpcAgentRequestSchema>;

export function decodeTpcAgentRequest(bytes: Uint8Array): TpcAgentRequest {
  return decodeMessage(TpcAgentRequestSchema, bytes, MAX_CRITICAL_MESSAGE_BYTES);
}

/** The answer to a prepare (`vote`) or to a decision (`state`: what the participant now holds). */
export const TpcAgentReplySchema = z.union([
  z.strictObject({ protocol: ProtocolSchema, txid: UuidSchema, vote: VoteSchema }),
  z.strictObject({ protocol: ProtocolSchema, txid: UuidSchema, state: z.enum(['committed', 'aborted']) }),
]);
export type TpcAgentReply = z.output<typeof TpcAgentReplySchema>;

export function decodeTpcAgentReply(bytes: Uint8Array): Reply<TpcAgentReply> {
  return decodeReply(TpcAgentReplySchema, bytes, MAX_CRITICAL_MESSAGE_BYTES);
}

// --- agent -> coordinator: `<ns>.tpc.status.<agentId>` ---

export const TpcStatusRequestSchema = z.strictObject({ protocol: ProtocolSchema, txid: UuidSchema });
export type TpcStatusRequest = z.output<typeof TpcStatusRequestSchema>;

export function decodeTpcStatusRequest(bytes: Uint8Array): TpcStatusRequest {
  return decodeMessage(TpcStatusRequestSchema, bytes, MAX_CRITICAL_MESSAGE_BYTES);
}

export const TpcStatusReplySchema = z.strictObject({ protocol: ProtocolSchema, txid: UuidSchema, decision: z.enum(['commit', 'abort', 'pending']), sig: SignatureSchema.exactOptional() });
export type TpcStatusReply = z.output<typeof TpcStatusReplySchema>;

export function decodeTpcStatusReply(bytes: Uint8Array): Reply<TpcStatusReply> {
  return decodeReply(TpcStatusReplySchema, bytes, MAX_CRITICAL_MESSAGE_BYTES);
}

// --- signatures: what a host acts on comes from the coordinator ---

/** What the coordinator signs: a message to one host about one transaction (a prepare, a decision, a status answer). */
export type TpcSigned =
  | { readonly t: 'prepare'; readonly txid: string; readonly operation: CriticalOperation; readonly deadline: number }
  | { readonly t: 'decision'; readonly txid: string; readonly decision: 'commit' | 'abort' }
  | { readonly t: 'status'; readonly txid: string; readonly decision: 'commit' | 'abort' | 'pending' };

/**
 * The bytes signed: the canonical JSON of the message with the host's id and a version, so a signature
 * made for one host, transaction or verb is worth nothing for another.
 */
export function tpcSigningBytes(agentId: string, m: TpcSigned): Uint8Array {
  const body = m.t === 'prepare' ? { t: m.t, txid: m.txid, operation: m.operation, deadline: m.deadline } : { t: m.t, txid: m.txid, decision: m.decision };
  return new TextEncoder().encode(canonicalJson({ v: 'fleet-tpc-1', agentId, ...body }));
}

/** The coordinator's signer, from its Ed25519 private key (PEM). */
export function tpcSigner(privateKeyPem: string): (agentId: string, m: TpcSigned) => string {
  const key = createPrivateKey(privateKeyPem);
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`the coordinator's signing key must be Ed25519, not ${String(key.asymmetricKeyType)}`);
  return (agentId, m) => signBytes(null, tpcSigningBytes(agentId, m), key).toString('base64');
}

/** A host's check of the coordinator's signature, from the coordinator's Ed25519 public key (PEM). */
export function tpcVerifier(publicKeyPem: string): (agentId: string, m: TpcSigned, sig: string | undefined) => boolean {
  const key = createPublicKey(publicKeyPem);
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`the coordinator's key must be Ed25519, not ${String(key.asymmetricKeyType)}`);
  return (agentId, m, sig) => sig !== undefined && verifyBytes(null, tpcSigningBytes(agentId, m), key, Buffer.from(sig, 'base64'));
}

// --- operator API: `<ns>.admin.critical.begin|show|list` ---

export const CriticalBeginRequestSchema = z.strictObject({
  protocol: ProtocolSchema,
  operation: CriticalOperationSchema,
  agents: z
    .array(AgentIdSchema)
    .min(1, { error: 'expected at least one agent' })
    .max(MAX_CRITICAL_AGENTS, { error: `at most ${MAX_CRITICAL_AGENTS} agents` })
    .refine((a) => new Set(a).size === a.length, { error: 'agents must be distinct' }),
  /** How long participants have to vote (default: the coordinator's `FLEET_CHANGELOG_VOTE_TIMEOUT`). */
  voteTimeoutMs: z.int().min(MIN_VOTE_TIMEOUT_MS, { error: `at least ${MIN_VOTE_TIMEOUT_MS}` }).max(MAX_VOTE_TIMEOUT_MS, { error: `at most ${MAX_VOTE_TIMEOUT_MS}` }).exactOptional(),
});
export type CriticalBeginRequest = z.output<typeof CriticalBeginRequestSchema>;

export function decodeCriticalBeginRequest(bytes: Uint8Array): CriticalBeginRequest {
  return decodeMessage(CriticalBeginRequestSchema, bytes, MAX_CRITICAL_MESSAGE_BYTES);
}

export const CriticalShowRequestSchema = z.strictObject({ protocol: ProtocolSchema, txid: UuidSchema });
export function decodeCriticalShowRequest(bytes: Uint8Array): z.output<typeof CriticalShowRequestSchema> {
  return decodeMessage(CriticalShowRequestSchema, bytes, MAX_CRITICAL_MESSAGE_BYTES);
}

export const CRITICAL_STATES = ['preparing', 'committing', 'aborting', 'committed', 'aborted'] as const;

export const CriticalListRequestSchema = z.strictObject({
  protocol: ProtocolSchema,
  state: z.enum(CRITICAL_STATES).exactOptional(),
  limit: PositiveIntSchema.max(100, { error: 'at most 100' }).exactOptional(),
});
export type CriticalListRequest = z.output<typeof CriticalListRequestSchema>;
export function decodeCriticalListRequest(bytes: Uint8Array): CriticalListRequest {
  return decodeMessage(CriticalListRequestSchema, bytes, MAX_CRITICAL_MESSAGE_BYTES);
}

/** A transaction as the coordinator's log holds it (the operation's value is not repeated: it may be a credential). */
export const CriticalTxViewSchema = z.strictObject({
  txid: UuidSchema,
  kind: z.enum(['certificate', 'credential']),
  name: NameSchema,
  participants: z.array(z.string()),
  state: z.enum(CRITICAL_STATES),
  votes: z.record(z.string(), VoteSchema),
  acked: z.array(z.string()),
  reason: z.string().exactOptional(),
  deadline: NonNegativeIntSchema,
  createdAt: NonNegativeIntSchema,
  decidedAt: NonNegativeIntSchema.exactOptional(),
  completedAt: NonNegativeIntSchema.exactOptional(),
});
export type CriticalTxView = z.output<typeof CriticalTxViewSchema>;

export const CriticalTxReplySchema = z.strictObject({ protocol: ProtocolSchema, transaction: CriticalTxViewSchema });
export function decodeCriticalTxReply(bytes: Uint8Array): Reply<z.output<typeof CriticalTxReplySchema>> {
  return decodeReply(CriticalTxReplySchema, bytes, MAX_CRITICAL_MESSAGE_BYTES * 4);
}

/** A list entry: the view without its per-participant arrays (a transaction may name 1,000 hosts), their counts instead. */
export const CriticalTxSummarySchema = z.strictObject({
  txid: UuidSchema,
  kind: z.enum(['certificate', 'credential']),
  name: NameSchema,
  state: z.enum(CRITICAL_STATES),
  hosts: NonNegativeIntSchema,
  acked: NonNegativeIntSchema,
  reason: z.string().exactOptional(),
  deadline: NonNegativeIntSchema,
  createdAt: NonNegativeIntSchema,
  decidedAt: NonNegativeIntSchema.exactOptional(),
  completedAt: NonNegativeIntSchema.exactOptional(),
});
export type CriticalTxSummary = z.output<typeof CriticalTxSummarySchema>;

export const CriticalListReplySchema = z.strictObject({ protocol: ProtocolSchema, transactions: z.array(CriticalTxSummarySchema) });
export function decodeCriticalListReply(bytes: Uint8Array): Reply<z.output<typeof CriticalListReplySchema>> {
  return decodeReply(CriticalListReplySchema, bytes, MAX_CRITICAL_MESSAGE_BYTES * 4);
}
