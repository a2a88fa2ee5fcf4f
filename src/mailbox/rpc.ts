/**
 * Typed requests over a MailboxClient: the message type fixes the body and reply types from the
 * catalogue, so callers cannot send a body of the wrong shape.
 */
import type { MailboxClient } from './client.js';
import type { Body, MessageType, Replies } from './messages.js';

export async function call<T extends MessageType>(
  client: MailboxClient,
  type: T,
  body: Body<T>,
  options: { payload?: Uint8Array; timeoutMs?: number } = {},
): Promise<{ body: Replies[T]; payload?: Uint8Array }> {
  const reply = await client.request(type, body, options.payload, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs });
  return reply.payload === undefined ? { body: reply.body as Replies[T] } : { body: reply.body as Replies[T], payload: reply.payload };
}
