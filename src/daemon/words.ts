// Counts in messages for people: "1 client", "2 clients".
export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
