/**
 * A doubly linked list whose nodes carry their own links (`prev`, `next`, `linked`):
 * appending and unlinking allocate nothing and hash nothing, which is what the lease
 * keeper and the operation timeouts need on every lock and every store call (a `Map` or
 * `Set` keyed by objects costs more for an entry that lives a few milliseconds).
 */

/** What a node of a {@link LinkedList} carries. */
export interface ListNode<T extends ListNode<T>> {
  prev: T | undefined;
  next: T | undefined;
  /** Whether the node is in a list now. */
  linked: boolean;
}

/** The list: oldest node first. */
export class LinkedList<T extends ListNode<T>> {
  /** The oldest node. */
  head: T | undefined;
  private tail: T | undefined;
  /** Nodes in the list. */
  size = 0;

  /** Appends `node` (not in a list). */
  push(node: T): void {
    node.prev = this.tail;
    node.next = undefined;
    node.linked = true;
    if (this.tail) this.tail.next = node;
    else this.head = node;
    this.tail = node;
    this.size += 1;
  }

  /** Takes `node` out of this list; a node not in it is left alone. */
  unlink(node: T): void {
    if (!node.linked) return;
    node.linked = false;
    if (node.prev) node.prev.next = node.next;
    else this.head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.tail = node.prev;
    node.prev = undefined;
    node.next = undefined;
    this.size -= 1;
  }
}
