//! A small XML tree over quick-xml, and JMeter's vocabulary on top of it
//! (test elements, `*Prop` properties, hash trees).
//!
//! Owns reading untrusted .jmx bytes safely (size, depth and element
//! bounds; no DOCTYPE, no entities but XML's five and character
//! references) and writing documents the way JMeter lays them out (two
//! spaces of indentation, `&quot;` in text). Must not know the plan
//! model: generate, import and prepare speak in terms of these elements.

use std::borrow::Cow;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::QName;
use quick_xml::{Reader, Writer, XmlVersion};

use super::{JmxError, MAX_JMX_BYTES, line_column};

/// Deeper than any real plan: each level of JMeter's tree costs two XML
/// levels (element + hashTree), properties four more.
const MAX_DEPTH: usize = 512;
/// A 16 MiB file of the smallest elements would hold millions; real plans
/// have thousands.
const MAX_ELEMENTS: usize = 500_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: &str) -> Element {
        Element {
            name: name.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    pub fn attr(mut self, key: &str, value: &str) -> Element {
        self.set_attr(key, value);
        self
    }

    pub fn set_attr(&mut self, key: &str, value: &str) {
        match self.attrs.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.to_string(),
            None => self.attrs.push((key.to_string(), value.to_string())),
        }
    }

    pub fn get_attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(mut self, e: Element) -> Element {
        self.children.push(Node::Element(e));
        self
    }

    pub fn text(mut self, t: &str) -> Element {
        self.children.push(Node::Text(t.to_string()));
        self
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The concatenated text of this element (its text children only).
    pub fn text_content(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    // --- JMeter test elements -------------------------------------------

    /// A test element as JMeter's TestElementConverter writes it. JMeter
    /// refuses elements without `guiclass`; 5.6 omits `enabled` when true.
    pub fn test_element(tag: &str, guiclass: &str, name: &str, enabled: bool) -> Element {
        let e = Element::new(tag)
            .attr("guiclass", guiclass)
            .attr("testclass", tag)
            .attr("testname", name);
        if enabled {
            e
        } else {
            e.attr("enabled", "false")
        }
    }

    pub fn testclass(&self) -> &str {
        self.get_attr("testclass").unwrap_or(&self.name)
    }

    pub fn testname(&self) -> &str {
        self.get_attr("testname").unwrap_or("")
    }

    /// Absent means enabled, in every JMeter version.
    pub fn enabled(&self) -> bool {
        self.get_attr("enabled")
            .is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"))
    }

    /// The name of a property element: its `name` attribute, or for
    /// `doubleProp`, `floatProp` and `objProp` its `<name>` child.
    pub fn prop_name(&self) -> Option<String> {
        if !self.name.ends_with("Prop") {
            return None;
        }
        match self.get_attr("name") {
            Some(n) => Some(n.to_string()),
            None => self
                .elements()
                .find(|e| e.name == "name")
                .map(Element::text_content),
        }
    }

    /// The property named `name` directly inside this element.
    pub fn prop(&self, name: &str) -> Option<&Element> {
        self.elements()
            .find(|e| e.prop_name().as_deref() == Some(name))
    }

    /// A property's value as text: string, bool, int and long properties
    /// hold it as text; double and float ones in a `<value>` child.
    pub fn prop_str(&self, name: &str) -> Option<String> {
        let p = self.prop(name)?;
        match p.name.as_str() {
            "doubleProp" | "floatProp" => p
                .elements()
                .find(|e| e.name == "value")
                .map(Element::text_content),
            "elementProp" | "collectionProp" | "objProp" => None,
            _ => Some(p.text_content()),
        }
    }

    pub fn prop_bool(&self, name: &str) -> Option<bool> {
        self.prop_str(name)
            .map(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// Replaces the property of the same name, whatever its type (or
    /// appends it).
    pub fn set_prop(&mut self, prop: Element) {
        let name = prop.prop_name();
        for n in &mut self.children {
            if let Node::Element(e) = n
                && e.prop_name() == name
            {
                *e = prop;
                return;
            }
        }
        self.children.push(Node::Element(prop));
    }

    /// Element and hash tree pairs of a `hashTree`: JMeter writes each test
    /// element followed by the `hashTree` of its children.
    pub fn tree_pairs(&self) -> Vec<(&Element, Option<&Element>)> {
        let elems: Vec<&Element> = self.elements().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < elems.len() {
            let e = elems[i];
            if e.name == "hashTree" {
                // A hash tree without its element: nothing to attach it to.
                i += 1;
                continue;
            }
            let tree = elems.get(i + 1).copied().filter(|t| t.name == "hashTree");
            out.push((e, tree));
            i += if tree.is_some() { 2 } else { 1 };
        }
        out
    }
}

pub(crate) fn string_prop(name: &str, value: &str) -> Element {
    Element::new("stringProp").attr("name", name).text(value)
}

pub(crate) fn bool_prop(name: &str, value: bool) -> Element {
    Element::new("boolProp")
        .attr("name", name)
        .text(if value { "true" } else { "false" })
}

pub(crate) fn int_prop(name: &str, value: i64) -> Element {
    Element::new("intProp")
        .attr("name", name)
        .text(&value.to_string())
}

pub(crate) fn long_prop(name: &str, value: i64) -> Element {
    Element::new("longProp")
        .attr("name", name)
        .text(&value.to_string())
}

pub(crate) fn collection_prop(name: &str, items: Vec<Element>) -> Element {
    let mut c = Element::new("collectionProp").attr("name", name);
    c.children = items.into_iter().map(Node::Element).collect();
    c
}

pub(crate) fn hash_tree(children: Vec<Element>) -> Element {
    let mut t = Element::new("hashTree");
    t.children = children.into_iter().map(Node::Element).collect();
    t
}

// --- Reading ---------------------------------------------------------------

/// Parses a whole document into its root element.
///
/// Refuses what a .jmx never has and an attacker would use: a DOCTYPE
/// (entity declarations: external entities read files, nested ones expand
/// exponentially), entity references other than `&lt; &gt; &amp; &quot;
/// &apos;` and character references, more than [`MAX_JMX_BYTES`],
/// [`MAX_DEPTH`] or [`MAX_ELEMENTS`]. Whitespace between elements is
/// dropped; text inside leaf elements is kept exactly.
pub(crate) fn parse(bytes: &[u8]) -> Result<Element, JmxError> {
    if bytes.len() > MAX_JMX_BYTES {
        return Err(JmxError::TooLarge {
            size: bytes.len(),
            limit: MAX_JMX_BYTES,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("");
            let (line, column) = line_column(valid, valid.len());
            return Err(JmxError::NotUtf8 { line, column });
        }
    };
    let mut reader = Reader::from_str(text);
    {
        let c = reader.config_mut();
        c.check_end_names = true;
        c.check_comments = true;
        c.expand_empty_elements = false;
        c.trim_text(false);
    }
    let at = |offset: u64| line_column(text, usize::try_from(offset).unwrap_or(usize::MAX));
    let xml_error = |offset: u64, message: String| {
        let (line, column) = at(offset);
        JmxError::Xml {
            line,
            column,
            message,
        }
    };

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let start = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| xml_error(reader.error_position(), e.to_string()))?;
        match event {
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| xml_error(start, e.to_string()))?;
                    if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                        return Err(xml_error(
                            start,
                            format!("encoding \"{enc}\": only UTF-8 is read (JMeter writes UTF-8)"),
                        ));
                    }
                }
            }
            Event::DocType(_) => {
                let (line, column) = at(start);
                return Err(JmxError::DocType { line, column });
            }
            Event::PI(_) | Event::Comment(_) => {}
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err(xml_error(start, "a second root element".into()));
            }
            Event::Start(s) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(JmxError::TooManyElements {
                        limit: MAX_ELEMENTS,
                    });
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(JmxError::TooDeep { limit: MAX_DEPTH });
                }
                stack.push(element_of(&s).map_err(|m| xml_error(start, m))?);
            }
            Event::Empty(s) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(JmxError::TooManyElements {
                        limit: MAX_ELEMENTS,
                    });
                }
                let e = element_of(&s).map_err(|m| xml_error(start, m))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(e)),
                    None => root = Some(e),
                }
            }
            Event::End(_) => {
                let mut e = stack
                    .pop()
                    .ok_or_else(|| xml_error(start, "a closing tag without its opening".into()))?;
                drop_layout_whitespace(&mut e);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(e)),
                    None => root = Some(e),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                push_text(&mut stack, &content, || {
                    xml_error(start, "text outside the root element".into())
                })?;
            }
            Event::CData(t) => {
                let content = t.xml10_content();
                push_text(&mut stack, &content, || {
                    xml_error(start, "CDATA outside the root element".into())
                })?;
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) if is_xml_char(c) => c.to_string(),
                    Ok(Some(c)) => {
                        return Err(xml_error(
                            start,
                            format!(
                                "character reference to U+{:04X}, not allowed in XML 1.0",
                                c as u32
                            ),
                        ));
                    }
                    Ok(None) => match &*r {
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "amp" => "&".into(),
                        "quot" => "\"".into(),
                        "apos" => "'".into(),
                        other => {
                            let (line, column) = at(start);
                            return Err(JmxError::Entity {
                                name: other.chars().take(64).collect(),
                                line,
                                column,
                            });
                        }
                    },
                    Err(e) => return Err(xml_error(start, e.to_string())),
                };
                push_text(&mut stack, &c, || {
                    xml_error(start, "a reference outside the root element".into())
                })?;
            }
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(xml_error(
            text.len() as u64,
            format!("the file ends inside <{}>", open.name),
        ));
    }
    root.ok_or_else(|| xml_error(0, "no root element".into()))
}

fn push_text(
    stack: &mut [Element],
    content: &str,
    outside: impl FnOnce() -> JmxError,
) -> Result<(), JmxError> {
    match stack.last_mut() {
        Some(parent) => {
            if let Some(Node::Text(prev)) = parent.children.last_mut() {
                prev.push_str(content);
            } else {
                parent.children.push(Node::Text(content.to_string()));
            }
            Ok(())
        }
        None if content.chars().all(char::is_whitespace) => Ok(()),
        None => Err(outside()),
    }
}

/// Whitespace-only text beside child elements is layout, not content.
/// Leaf elements keep theirs (a `stringProp` of two spaces means it), except
/// JMeter's structural elements whose text never means anything.
fn drop_layout_whitespace(e: &mut Element) {
    let structural = matches!(
        e.name.as_str(),
        "hashTree" | "collectionProp" | "elementProp" | "jmeterTestPlan"
    );
    let has_elements = e.elements().next().is_some();
    if has_elements || structural {
        e.children.retain(|n| match n {
            Node::Text(t) => !t.chars().all(char::is_whitespace),
            Node::Element(_) => true,
        });
    }
}

fn element_of(s: &BytesStart<'_>) -> Result<Element, String> {
    let name = s.name().as_ref().to_string();
    let mut e = Element::new(&name);
    for a in s.attributes().with_checks(true) {
        let a = a.map_err(|err| err.to_string())?;
        let key = a.key.as_ref().to_string();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| err.to_string())?;
        e.attrs.push((key, value.into_owned()));
    }
    Ok(e)
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

// --- Writing ---------------------------------------------------------------

/// Writes a document: XML declaration, `root`, final newline. Two spaces
/// of indentation like JMeter; text of leaf elements written exactly.
pub(crate) fn write(root: &Element) -> Vec<u8> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec cannot fail.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    write_element(&mut w, root);
    let _ = w.write_event(Event::Text(BytesText::from_escaped("\n")));
    w.into_inner()
}

fn write_element(w: &mut Writer<Vec<u8>>, e: &Element) {
    let mut start = BytesStart::new(e.name.as_str());
    for (k, v) in &e.attrs {
        start.push_attribute(Attribute {
            key: QName(k.as_str()),
            value: Cow::Owned(escape(v, true)),
        });
    }
    if e.children.is_empty() {
        let _ = w.write_event(Event::Empty(start));
        return;
    }
    let _ = w.write_event(Event::Start(start));
    for n in &e.children {
        match n {
            Node::Element(c) => write_element(w, c),
            Node::Text(t) => {
                let _ = w.write_event(Event::Text(BytesText::from_escaped(escape(t, false))));
            }
        }
    }
    let _ = w.write_event(Event::End(BytesEnd::new(e.name.as_str())));
}

/// Escapes like JMeter's XStream writer (`&quot;` and `&apos;` in text
/// too), plus what a parser would otherwise change: `\r` in text and
/// line breaks and tabs in attributes (normalised to spaces on reading).
/// Characters XML 1.0 cannot carry at all become U+FFFD.
fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(doc: &str) -> String {
        String::from_utf8(write(&parse(doc.as_bytes()).unwrap())).unwrap()
    }

    #[test]
    fn text_is_kept_exactly_and_layout_is_redone() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a>\n    <b x=\"1 &amp; 2\">  two spaces </b>\n<c/><d></d><e>{&quot;k&quot;: &#10;&lt;1&gt;}</e>\n</a>\n";
        let out = roundtrip(doc);
        assert_eq!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a>\n  <b x=\"1 &amp; 2\">  two spaces </b>\n  <c/>\n  <d/>\n  <e>{&quot;k&quot;: \n&lt;1&gt;}</e>\n</a>\n"
        );
        assert_eq!(roundtrip(&out), out);
    }

    #[test]
    fn carriage_returns_and_attribute_breaks_survive() {
        let e = Element::new("r")
            .attr("n", "a\nb\tc")
            .child(Element::new("t").text("x\r\ny"))
            .child(Element::new("empty").text(""));
        let bytes = write(&e);
        let back = parse(&bytes).unwrap();
        assert_eq!(back.get_attr("n"), Some("a\nb\tc"));
        let t: Vec<&Element> = back.elements().collect();
        assert_eq!(t[0].text_content(), "x\r\ny");
        // An empty text child writes <empty></empty>, which reads back as
        // an element without children.
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("<empty></empty>")
        );
    }

    #[test]
    fn refuses_doctype_entities_and_bad_input_with_positions() {
        let xxe = b"<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n<r>&x;</r>";
        assert_eq!(
            parse(xxe).unwrap_err(),
            JmxError::DocType { line: 2, column: 1 }
        );
        let lol = b"<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><lolz>&lol2;</lolz>";
        assert!(matches!(parse(lol), Err(JmxError::DocType { .. })));
        let undeclared = b"<r>\n  <s>&nbsp;</s></r>";
        assert_eq!(
            parse(undeclared).unwrap_err(),
            JmxError::Entity {
                name: "nbsp".into(),
                line: 2,
                column: 6
            }
        );
        let attr_entity = b"<r a=\"&x;\"/>";
        assert!(matches!(parse(attr_entity), Err(JmxError::Xml { .. })));
        let broken = b"<r>\n<a></b></r>";
        match parse(broken).unwrap_err() {
            JmxError::Xml { line, .. } => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(b"<r><a>"), Err(JmxError::Xml { .. })));
        assert!(matches!(parse(b"<r/><s/>"), Err(JmxError::Xml { .. })));
        assert!(matches!(parse(b""), Err(JmxError::Xml { .. })));
        assert!(matches!(
            parse(b"<r>\xff</r>"),
            Err(JmxError::NotUtf8 { line: 1, column: 4 })
        ));
        assert!(matches!(
            parse(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r/>"),
            Err(JmxError::Xml { .. })
        ));
        assert!(matches!(parse(b"<r>&#1;</r>"), Err(JmxError::Xml { .. })));
    }

    #[test]
    fn bounds_size_depth_and_count() {
        let big = vec![b' '; MAX_JMX_BYTES + 1];
        assert!(matches!(parse(&big), Err(JmxError::TooLarge { .. })));
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(JmxError::TooDeep { .. })
        ));
        let many = format!("<r>{}</r>", "<a/>".repeat(MAX_ELEMENTS + 1));
        assert!(matches!(
            parse(many.as_bytes()),
            Err(JmxError::TooManyElements { .. })
        ));
    }
}
