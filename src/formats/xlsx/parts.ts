// The small parts of the workbook's package, written at the end once the sheets are known: the
// workbook (its sheets and their autofilter ranges), the relationships, the styles and the content
// types.
import { attribute, xmlText } from './cells.js'

export const XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
export const MAIN_NS = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main'
export const REL_NS = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships'
const PACKAGE_REL_NS = 'http://schemas.openxmlformats.org/package/2006/relationships'

// Cell styles: indexes into the `cellXfs` of stylesXml().
export const STYLE_HEADER = 1
export const STYLE_DATETIME = 2
export const STYLE_DATE = 3

/** A sheet of the workbook: its name and, with a header, its autofilter's range. */
export interface SheetPart {
  name: string
  /** The autofilter over the header and the rows under it: the last column's letters, the data rows. */
  filter?: { lastColumn: string; rows: number }
}

/** `_rels/.rels`: the package's relationship to its workbook. */
export const PACKAGE_RELS = `${XML_HEAD}<Relationships xmlns="${PACKAGE_REL_NS}"><Relationship Id="rId1" Type="${REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>`

/** `xl/workbook.xml`: the sheets, and the autofilters' ranges (sheets with a header). */
export function workbookXml(parts: readonly SheetPart[]): string {
  const sheets = parts.map(({ name }, i) => `<sheet name="${attribute(name)}" sheetId="${i + 1}" r:id="rId${i + 1}"/>`).join('')
  // The autofilters' ranges, as Excel itself names them.
  const ranges = parts.flatMap(({ name, filter }, i) =>
    filter
      ? [
          `<definedName name="_xlnm._FilterDatabase" localSheetId="${i}" hidden="1">${xmlText(`'${name.replace(/'/g, "''")}'`)}!$A$1:$${filter.lastColumn}$${filter.rows + 1}</definedName>`,
        ]
      : [],
  )
  const filters = ranges.length > 0 ? `<definedNames>${ranges.join('')}</definedNames>` : ''
  return `${XML_HEAD}<workbook xmlns="${MAIN_NS}" xmlns:r="${REL_NS}"><bookViews><workbookView/></bookViews><sheets>${sheets}</sheets>${filters}</workbook>`
}

/** `xl/_rels/workbook.xml.rels`: the workbook's sheets and styles. */
export function workbookRels(names: readonly string[]): string {
  const sheets = names.map((_, i) => `<Relationship Id="rId${i + 1}" Type="${REL_NS}/worksheet" Target="worksheets/sheet${i + 1}.xml"/>`).join('')
  const styles = `<Relationship Id="rId${names.length + 1}" Type="${REL_NS}/styles" Target="styles.xml"/>`
  return `${XML_HEAD}<Relationships xmlns="${PACKAGE_REL_NS}">${sheets}${styles}</Relationships>`
}

/** `xl/styles.xml`: the bold header and the two date formats (STYLE_HEADER, STYLE_DATETIME, STYLE_DATE). */
export function stylesXml(dateTimeFormat: string, dateFormat: string): string {
  return (
    `${XML_HEAD}<styleSheet xmlns="${MAIN_NS}">` +
    `<numFmts count="2"><numFmt numFmtId="164" formatCode="${attribute(dateTimeFormat)}"/><numFmt numFmtId="165" formatCode="${attribute(dateFormat)}"/></numFmts>` +
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font><font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>' +
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>' +
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>' +
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>' +
    '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>' +
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>' +
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>' +
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>' +
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
  )
}

/** `[Content_Types].xml`: the type of each part. */
export function contentTypes(names: readonly string[]): string {
  const sheets = names
    .map(
      (_, i) =>
        `<Override PartName="/xl/worksheets/sheet${i + 1}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>`,
    )
    .join('')
  return (
    `${XML_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>' +
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>' +
    `${sheets}<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>`
  )
}
