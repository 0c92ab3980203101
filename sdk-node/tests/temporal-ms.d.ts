// The `ms` package that @temporalio/common uses ships types its exports map hides from
// TypeScript's NodeNext resolution; this is the part @temporalio/common uses.
declare module 'ms' {
  export type StringValue = string
  function ms(value: StringValue): number
  function ms(value: number, options?: { long: boolean }): string
  export default ms
}
