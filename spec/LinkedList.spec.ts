import { LinkedList, type ListNode } from '../lib/LinkedList';

interface Node extends ListNode<Node> {
  id: string;
}

const node = (id: string): Node => ({ id, prev: undefined, next: undefined, linked: false });

function ids(list: LinkedList<Node>): string[] {
  const out: string[] = [];
  for (let n = list.head; n; n = n.next) out.push(n.id);
  return out;
}

describe('LinkedList (the lease keeper and the operation timeouts)', () => {
  it('keeps insertion order; unlinks from the head, the middle and the tail; twice is harmless', () => {
    const list = new LinkedList<Node>();
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(node);
    for (const n of [a, b, c, d]) list.push(n);
    expect(ids(list)).toEqual(['a', 'b', 'c', 'd']);
    list.unlink(b);
    list.unlink(b);
    expect(ids(list)).toEqual(['a', 'c', 'd']);
    list.unlink(a);
    list.unlink(d);
    expect(ids(list)).toEqual(['c']);
    expect(list.size).toBe(1);
    list.unlink(c);
    expect(list.head).toBeUndefined();
    expect(list.size).toBe(0);
    list.push(b); // a node taken out can go back in
    expect(ids(list)).toEqual(['b']);
    expect(b.linked).toBe(true);
    expect(a.linked).toBe(false);
  });
});
