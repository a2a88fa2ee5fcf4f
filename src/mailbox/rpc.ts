/**
 * Typed requests over a MailboxClient: the message type fixes the body and reply types from the
 * catalogue, so callers cannot send a body of the wrong shape.
 */
import type { MailboxClient, MailboxReply } from './client.js';
import type { Body, MessageType, Replies } from './messages.js';

/** A reply whose body has its catalogue type; payload and release as in MailboxReply. */
export type TypedReply<T extends MessageType> = Omit<MailboxReply, 'body'> & { body: Replies[T] };

export async function call<T extends MessageType>(
  client: MailboxClient,
  type: T,
  body: Body<T>,
  options: { payload?: Uint8Array; timeoutMs?: number } = {},
): Promise<TypedReply<T>> {
  const reply = await client.request(type, body, options.payload, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs });
  return { ...reply, body: reply.body as Replies[T] };
}
